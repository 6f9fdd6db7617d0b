"""The tier rule in SQL, for the ledger's writes that find the tier in the same statement as the balances."""

from .models import Tier


def tier_for_lifetime_sql(lifetime: str) -> str:
    """A subquery giving the id of the highest tier whose threshold `lifetime` (an SQL expression) reaches; NULL below
    the lowest, as ledger.tier_for does in Python."""
    return (
        f"(SELECT t.id FROM {Tier._meta.db_table} t WHERE t.threshold <= {lifetime} ORDER BY t.threshold DESC LIMIT 1)"
    )
