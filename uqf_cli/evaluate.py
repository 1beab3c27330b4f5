"""Old path of :mod:`uqf_cli.evaluation`."""
# transitional: removed at merge
from uqf_cli.evaluation.evaluate import *  # noqa: F403
