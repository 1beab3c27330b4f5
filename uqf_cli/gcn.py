"""Old path of :mod:`uqf_cli.collab`."""
# transitional: removed at merge
from uqf_cli.collab.config import GcnConfig  # noqa: F401
from uqf_cli.collab.graph import *  # noqa: F403
from uqf_cli.collab.stage import *  # noqa: F403
from uqf_cli.collab.training import *  # noqa: F403
