"""Training: the fit loop, checkpoints and run directories."""
