"""Training-ready datasets: balancing, lineage across snapshots, grouped splits, assembly."""
