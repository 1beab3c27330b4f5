"""Old path of :mod:`uqf_cli.embed.fields`."""
# transitional: removed at merge
from uqf_cli.embed.fields import *  # noqa: F403
