"""Old path of :mod:`uqf_cli.embed`."""
# transitional: removed at merge
from uqf_cli.embed.fields import DEFAULT_FIELDS  # noqa: F401
from uqf_cli.embed.models import *  # noqa: F403
from uqf_cli.embed.stage import *  # noqa: F403
from uqf_cli.embed.texts import *  # noqa: F403
