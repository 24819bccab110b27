"""Simulation readers and demo-universe writers, one module per simulation family."""
