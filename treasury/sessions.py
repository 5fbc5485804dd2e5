"""Django's database sessions, read and written as the system.

`django_session` holds every signed-in person's session key, so it has row-level security
that no user context passes (treasury/migrations/0006). The session is what tells the
request who it is, so it is read before any context exists: this store steps into the
system context for its own statements, and for nothing else.
"""

from __future__ import annotations

from typing import Any

from django.contrib.sessions.backends import db

from treasury.rls import system_context


class SessionStore(db.SessionStore):
    def load(self) -> dict[str, Any]:
        with system_context():
            return super().load()

    def exists(self, session_key: str) -> bool:
        with system_context():
            return super().exists(session_key)

    def create(self) -> None:
        with system_context():
            super().create()

    def save(self, must_create: bool = False) -> None:
        with system_context():
            super().save(must_create=must_create)

    def delete(self, session_key: str | None = None) -> None:
        with system_context():
            super().delete(session_key)

    @classmethod
    def clear_expired(cls) -> None:
        with system_context():
            super().clear_expired()
