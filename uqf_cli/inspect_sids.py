"""Old path of :mod:`uqf_cli.evaluation.inspect_sids`."""
# transitional: removed at merge
from uqf_cli.evaluation.inspect_sids import *  # noqa: F403
