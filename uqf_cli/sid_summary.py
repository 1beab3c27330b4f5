"""Old path of :mod:`uqf_cli.evaluation.sid_summary`."""
# transitional: removed at merge
from uqf_cli.evaluation.sid_summary import *  # noqa: F403
