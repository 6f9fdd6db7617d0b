"""The loyalty admin, one module per area."""

from . import catalog, entries, groups, members, orders, reports, tokens  # noqa: F401
