"""Helpers that change a model's training objective: KL annealing and free bits for the variational
models (:mod:`~probseq.models.objectives.kl_annealing`), scheduled sampling for the recurrent models
(:mod:`~probseq.models.objectives.scheduled_sampling`).

They live with the models (below :mod:`probseq.train`) because the models own their objectives: the
trainer only passes the step number.
"""
