"""Two-step simulation-based inference of accreted dwarfs from a halo's [O/Fe]-[Fe/H] plane.

Step 1 (``nsub``): the number of building blocks N_sub, three ways: an NPE on N_sub treated as
continuous and rounded (CASBI), a CNN classifier with skip connections (CASBI's alternative),
and sbi's mixed NPE (MNPE) with N_sub as a discrete parameter. Step 2 (``blocks``): the
(stellar mass, dark-matter mass, infall time) of each building block given N_sub, one training
row per block conditioned on its rank (by stellar mass) and N_sub, an ensemble of NPEs.
"""
