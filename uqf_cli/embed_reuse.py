"""Old path of :mod:`uqf_cli.embed.reuse`."""
# transitional: removed at merge
from uqf_cli.embed.reuse import *  # noqa: F403
