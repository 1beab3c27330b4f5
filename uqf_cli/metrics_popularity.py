"""Old path of :mod:`uqf_cli.evaluation.popularity`."""
# transitional: removed at merge
from uqf_cli.evaluation.popularity import *  # noqa: F403
