"""mmbench's Hydra launcher plugins (Hydra discovers plugins in the hydra_plugins package)."""
