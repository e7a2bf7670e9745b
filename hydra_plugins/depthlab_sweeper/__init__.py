"""depthlab's Hydra sweeper (Hydra requires plugins in the hydra_plugins namespace)."""
