"""Figures for the Snakemake HTML report."""
