"""Old path of :mod:`uqf_cli.evaluation.metrics`."""
# transitional: removed at merge
from uqf_cli.evaluation.metrics import *  # noqa: F403
