"""The dm2gal branch (CAMELS dark matter to galaxies): 3D networks, HOD baseline, power
spectra and evaluation."""
