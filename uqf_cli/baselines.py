"""Old path of :mod:`uqf_cli.evaluation.metrics`."""
# transitional: removed at merge
from uqf_cli.evaluation.metrics import item_counts, popularity_order, top_k_from_scores  # noqa: F401
