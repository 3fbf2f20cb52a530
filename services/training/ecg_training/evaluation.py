"""The evaluation functions live in :mod:`ecg_shared.evaluation`, so that the inference service's promotion gate
scores versions with the very figures training reports; imported here under their training-side name."""

from ecg_shared.evaluation import abnormal_score, choose_threshold, evaluate, primary_metric

__all__ = ["abnormal_score", "choose_threshold", "evaluate", "primary_metric"]
