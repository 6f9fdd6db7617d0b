"""The loyalty admin, one module per area."""

from . import catalog, entries, members  # noqa: F401
