"""Reports and analytics read from a replica when DATABASE_REPLICA_URL is set.

Reads are routed to the `replica` alias only inside `replica_reads(...)`, which also sets
the row-level security context on the replica's connection (policies apply there as on the
primary; a connection without context sees nothing). Writes always go to `default`, and
nothing migrates the replica (streaming replication copies the schema). Without a replica
every read stays on `default`, and the block only sets the context it is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings

from treasury.rls import system_context, user_context

REPLICA_ALIAS = "replica"
_reading_from_replica: ContextVar[bool] = ContextVar("treasury_replica_reads", default=False)


def replica_configured() -> bool:
    return REPLICA_ALIAS in settings.DATABASES


def reporting_alias() -> str:
    """Where reporting and analytics reads go: the replica if there is one."""
    return REPLICA_ALIAS if replica_configured() else "default"


@contextmanager
def replica_reads(*, user: Any = None) -> Iterator[str]:
    """Route this block's reads to the replica (if any), under `user`'s RLS context there
    (the system's when `user` is None). Yields the alias the reads use."""
    alias = reporting_alias()
    token = _reading_from_replica.set(True)
    try:
        with ExitStack() as stack:
            stack.enter_context(
                user_context(user, using=alias) if user is not None else system_context(alias)
            )
            yield alias
    finally:
        _reading_from_replica.reset(token)


class ReplicaRouter:
    """Reads inside `replica_reads` go to the replica; writes never do."""

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        if _reading_from_replica.get() and replica_configured():
            return REPLICA_ALIAS
        return None

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        # An object read from the replica is written back to the primary, never there.
        instance = hints.get("instance")
        if instance is not None and getattr(instance._state, "db", None) == REPLICA_ALIAS:
            return "default"
        return None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # The replica holds the primary's rows: objects read from either may be related.
        return True if replica_configured() else None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return False if db == REPLICA_ALIAS else None
