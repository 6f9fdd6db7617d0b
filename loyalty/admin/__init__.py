"""The loyalty admin, one module per area."""

from . import catalog, entries, groups, members, orders, tokens  # noqa: F401
