"""Old path of :mod:`uqf_cli.embed.from_array`."""
# transitional: removed at merge
from uqf_cli.embed.from_array import *  # noqa: F403
