"""The configuration layer: option declarations, files and environment, configure()."""
