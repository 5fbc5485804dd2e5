"""A running job's progress, visible to the API while the job's own transaction is open.

A generator reads the books in one long transaction (the row-level-security context and a
server-side cursor both live in it), so it cannot commit progress on its own connection.
`Progress` writes `reports.progress_percent` through a second connection, as the runtime role
in the system context, one short transaction per change of a whole percent.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from django.db import connections

from treasury.rls import ContextRole, set_context_statement


class Progress:
    def __init__(self, report_id: int, *, using: str = "default") -> None:
        self.report_id = report_id
        self.using = using
        self.percent = 0
        self._connection: Any = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def update(self, percent: int) -> None:
        """Record `percent` (0-100) if it moved forward; a failure to record is not fatal."""
        percent = max(0, min(100, int(percent)))
        if percent <= self.percent:
            return
        self.percent = percent
        try:
            self._write(percent)
        except Exception:  # progress is a courtesy: the report's outcome does not depend on it
            self.close()

    def fraction(self, done: int, total: int, *, start: int = 0, end: int = 100) -> None:
        """Progress `done` of `total` mapped onto [start, end] percent."""
        span = end - start
        self.update(start + (span * done // total if total else span))

    def _write(self, percent: int) -> None:
        import psycopg

        if self._connection is None:
            params = connections[self.using].get_connection_params()
            params.pop("cursor_factory", None)
            params.pop("context", None)
            self._connection = psycopg.connect(**params, autocommit=True)
        with self._connection.transaction():
            # lock_timeout: if this process's own job connection holds the row (a caller's open
            # transaction), waiting for it would never end; the update is skipped instead.
            context, params = set_context_statement(
                self._connection, user_id=None, role=ContextRole.SYSTEM
            )
            self._connection.execute(
                f"SELECT {context}, set_config('lock_timeout', '2s', true)", params
            )
            # Never moves a finished report, nor one taken over by another worker, backwards.
            self._connection.execute(
                "UPDATE reports SET progress_percent = %s, updated_at = now()"
                " WHERE id = %s AND status = 'running' AND progress_percent < %s",
                [percent, self.report_id, percent],
            )

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
