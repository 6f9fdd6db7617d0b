"""Record ids read from addresses and forms."""

BIGINT_MAX = 2**63 - 1


def record_id(value) -> int | None:
    """The id a URL part or form value names, or None when it cannot be one: only ASCII digits ("²" and "٣" pass
    str.isdigit() but not int()), and no larger than the databases' 64-bit keys (SQLite overflows past it)."""
    text = str(value or "")
    if not (text.isascii() and text.isdigit()):
        return None
    number = int(text)
    return number if 0 < number <= BIGINT_MAX else None
