"""The kinds of upload, by name: each knows its columns and how its rows are checked and applied."""

from .base import READY, ChunkResult, Context, Kind
from .members import MembersKind
from .orders import OrdersKind
from .points import PointsKind
from .tokens import TokensKind

KINDS: dict[str, Kind] = {k.name: k for k in (PointsKind(), TokensKind(), MembersKind(), OrdersKind())}

__all__ = ["KINDS", "READY", "ChunkResult", "Context", "Kind"]
