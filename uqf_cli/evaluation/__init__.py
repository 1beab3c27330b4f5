"""Scoring: ranking metrics, ``uqf evaluate`` / ``uqf recommend``, and ``uqf inspect-sids``."""

from uqf_cli.evaluation.evaluate import (
    check_ks,
    check_model_inputs,
    evaluate,
    recommend_for_history,
    write_predictions,
)

__all__ = ["check_ks", "check_model_inputs", "evaluate", "recommend_for_history", "write_predictions"]
