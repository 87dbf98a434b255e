"""Likelihood estimators, prediction metrics and model comparison."""
