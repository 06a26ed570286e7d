"""mimic's Hydra configs, shipped in the package and found through the `pkg://mimic.conf` search path."""
