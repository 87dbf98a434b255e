"""Evaluation the CLI runs: scoring splits, paired comparisons, prediction metrics (estimators are in probseq.estimators)."""
