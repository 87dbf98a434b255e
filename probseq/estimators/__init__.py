"""Likelihood estimators that models and frame distributions call.

:mod:`probseq.estimators.ais` (annealed importance sampling for RBM log-partitions) and
:mod:`probseq.estimators.latent` (ELBO, IWAE-k and importance-sampled estimates for latent-variable
models). They sit below models and frames; the evaluation the CLI runs (scoring, comparisons,
prediction metrics) is :mod:`probseq.evaluate`.
"""
