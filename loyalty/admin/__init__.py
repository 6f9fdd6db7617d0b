"""The loyalty admin, one module per area."""

from . import catalog, entries, groups, members, tokens  # noqa: F401
