"""Old path of :mod:`uqf_cli.collab.config`."""
# transitional: removed at merge
from uqf_cli.collab.config import GcnConfig  # noqa: F401
