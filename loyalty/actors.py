"""Who did it: a staff user, or the system with the job that did it."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SystemActor:
    """A job acting on its own (an import, a backfill run, a scheduled job, a webhook)."""

    name: str

    def __str__(self):
        return self.name


RELEASE_JOB = SystemActor("schedule: release matured pending points")


def actor_fields(actor) -> dict:
    """The LedgerEntry columns that record who acted."""
    if isinstance(actor, SystemActor):
        return {"actor_user_id": None, "actor_system": actor.name[:100]}
    if actor is None or not getattr(actor, "pk", None):
        raise ValueError("actor must be a saved staff user or a SystemActor")
    return {"actor_user_id": actor.pk, "actor_system": ""}


EXPIRY_JOB = SystemActor("schedule: expire points")
