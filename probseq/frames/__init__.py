"""Per-step distributions p(x_t | context): factorial, mixture, RBM, NADE."""
