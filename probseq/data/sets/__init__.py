"""Dataset loaders; each module registers its names with :func:`probseq.data.registry.register_dataset`."""
