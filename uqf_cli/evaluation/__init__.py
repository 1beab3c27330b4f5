"""Scoring: ranking metrics, ``uqf evaluate`` (options: :mod:`.config`), ``uqf recommend``, ``uqf inspect-sids``."""

from uqf_cli.evaluation.config import EvaluateConfig, check_ks
from uqf_cli.evaluation.evaluate import (
    check_model_inputs,
    evaluate,
    recommend_for_history,
    write_predictions,
)

__all__ = ["EvaluateConfig", "check_ks", "check_model_inputs", "evaluate", "recommend_for_history",
           "write_predictions"]
