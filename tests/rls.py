"""Row-level security helpers for tests that talk to PostgreSQL without Django."""

from __future__ import annotations

from typing import Any

from treasury.rls import set_context_statement


def set_raw_context(conn: Any, *, role: str = "system", user_id: object = None) -> None:
    """Set a verified RLS context on a raw psycopg connection, as the application does (a
    plain set_config would not be believed: treasury/rls.py)."""
    expression, params = set_context_statement(conn, user_id=user_id, role=role)
    conn.execute(f"SELECT {expression}", params)
