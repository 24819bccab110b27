"""Extraction of machine-learning inputs and targets (maps, voxels, histograms) from simulations."""
