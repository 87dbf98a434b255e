"""Optimisers beyond ``torch.optim``: Hessian-free (Martens 2010) and Nesterov momentum as in
Sutskever's thesis (ch. 7), with the sparse and echo-state initialisations they go with."""

from probseq.optim.curvature import CurvatureOutputs, GaussNewtonOperator
from probseq.optim.hessian_free import HessianFree, conjugate_gradient
from probseq.optim.init import apply_initialisation, echo_state_init_, sparse_init_, spectral_radius
from probseq.optim.nag import NesterovMomentum, momentum_schedule

__all__ = ["CurvatureOutputs", "GaussNewtonOperator", "HessianFree", "conjugate_gradient",
           "NesterovMomentum", "momentum_schedule", "sparse_init_", "echo_state_init_",
           "spectral_radius", "apply_initialisation"]
