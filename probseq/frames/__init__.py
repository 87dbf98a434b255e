"""Per-step distributions p(x_t | context): factorial, RBM, NADE."""
