"""mmbench's Hydra sweeper plugins (Hydra discovers plugins in the hydra_plugins package)."""
