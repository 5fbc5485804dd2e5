"""The outbox is append-only for what happened, and only the system and admins see it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, transaction

from treasury.rls import ContextRole, rls_context, system_context

from .conftest import charge, event_of

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE events SET payload = '{}'::jsonb WHERE id = %s", "never changes"),
        ("UPDATE events SET type = 'x' WHERE id = %s", "never changes"),
        ("DELETE FROM events WHERE id = %s", "never deleted"),
    ],
)
def test_an_events_payload_cannot_change_even_as_system(host, raw_sql, statement, message):
    event = event_of(charge(host))
    with system_context(), pytest.raises(DatabaseError, match=message), transaction.atomic():
        raw_sql(statement, [event.pk])


def test_only_dispatched_at_is_set_and_only_once(host, raw_sql):
    event = event_of(charge(host))
    with system_context():
        raw_sql("UPDATE events SET dispatched_at = now() WHERE id = %s", [event.pk])
        with pytest.raises(DatabaseError, match="dispatched"), transaction.atomic():
            raw_sql("UPDATE events SET dispatched_at = NULL WHERE id = %s", [event.pk])


def test_not_even_the_owner_can_truncate_or_edit_events(owner_connection):
    """The superuser that owns the table bypasses RLS, but not the triggers."""
    with (
        owner_connection.cursor() as cur,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        cur.execute("TRUNCATE events CASCADE")
    owner_connection.rollback()
    with owner_connection.cursor() as cur:
        cur.execute(
            "INSERT INTO events (type, subject, payload, created_at)"
            " VALUES ('tests.owner', 'x', '{}', now()) RETURNING id"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="never changes"):
            cur.execute("UPDATE events SET subject = 'edited' WHERE type = 'tests.owner'")
    owner_connection.rollback()


def test_hosts_see_no_events_or_deliveries_and_cannot_write_them(host, raw_sql):
    event = event_of(charge(host))
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        assert raw_sql("SELECT id FROM events WHERE id = %s", [event.pk]) == []
        assert raw_sql("SELECT count(*) FROM event_deliveries")[0][0] == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            raw_sql(
                "INSERT INTO events (type, subject, payload, created_at)"
                " VALUES ('x', 'y', '{}', now())"
            )
    with rls_context(user_id=None, role=ContextRole.ADMIN):
        assert raw_sql("SELECT id FROM events WHERE id = %s", [event.pk]) == [(event.pk,)]


def test_with_no_context_nothing_is_visible(host, raw_sql):
    event = event_of(charge(host))
    assert raw_sql("SELECT id FROM events WHERE id = %s", [event.pk]) == []
