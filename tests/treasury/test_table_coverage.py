"""Every table the runtime role can read is covered by row-level security, or is on the list
below with the reason it holds no user data. A new table fails here until someone decides."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore as PlainSessionStore
from django.db import connections
from djstripe.models import Event, WebhookEventTrigger

from tests.factories import UserFactory
from treasury.rls import ContextRole, rls_context, system_context
from treasury.stripe.models import StripeEventProcessing

pytestmark = pytest.mark.django_db(databases=["default", "owner"])

# Readable without row-level security, on purpose.
ALLOWED_WITHOUT_RLS = {
    "auth_group": "configuration: staff group names",
    "auth_group_permissions": "configuration: which permissions a group grants",
    "auth_permission": "configuration: Django's permission catalogue",
    "django_content_type": "configuration: Django's model catalogue",
    "django_migrations": "schema history",
    "guardian_groupobjectpermission": "configuration: group grants on objects, no person",
    # django-q2's ORM broker reads its queue before any context exists (a worker is not a
    # request). Payloads name objects by id, never a person's data.
    "django_q_ormq": "job queue: task ids and object ids",
    "django_q_schedule": "job schedules: task names and cron strings",
    "django_q_task": "job results: task names, object ids, outcomes",
}


def readable_tables() -> dict[str, tuple[bool, bool]]:
    """Each table the runtime role may SELECT: (row security on, forced)."""
    with connections["owner"].cursor() as cursor:
        cursor.execute(
            "SELECT n.nspname || '.' || c.relname, c.relrowsecurity, c.relforcerowsecurity"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND has_table_privilege(%s, c.oid, 'SELECT')",
            [connections["default"].settings_dict["USER"]],
        )
        return {name: (on, forced) for name, on, forced in cursor.fetchall()}


def test_every_readable_table_has_row_level_security_or_a_reason():
    tables = readable_tables()
    uncovered = {
        name.removeprefix("public.") for name, (on, forced) in tables.items() if not (on and forced)
    }
    assert uncovered - ALLOWED_WITHOUT_RLS.keys() == set()
    # The list holds nothing that has gone, so it cannot grow stale.
    assert ALLOWED_WITHOUT_RLS.keys() <= {name.removeprefix("public.") for name in tables}


def test_the_key_table_is_not_readable():
    assert not any(name.startswith("treasury_private.") for name in readable_tables())


def test_stripe_records_and_sessions_are_invisible_to_a_user(raw_sql):
    user = UserFactory()
    with system_context():
        event = Event.objects.create(id="evt_coverage", type="charge.succeeded", data={})
        WebhookEventTrigger.objects.create(
            remote_ip="127.0.0.1", headers={}, body='{"email": "buyer@example.test"}'
        )
        StripeEventProcessing.objects.create(stripe_event_id=event.id, event_type=event.type)
        session = PlainSessionStore()
        session["secret"] = "value"
        session.create()
    tables = [
        "djstripe_event",
        "djstripe_webhookeventtrigger",
        "stripe_event_processing",
        "djstripe_account",
        "django_session",
    ]
    with system_context():
        seen_by_system = {t: raw_sql(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    with rls_context(user_id=user.pk, role=ContextRole.USER):
        seen_by_user = {t: raw_sql(f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    assert seen_by_user == dict.fromkeys(tables, 0)
    assert all(seen_by_system[t] > 0 for t in tables if t != "djstripe_account")


def test_sessions_still_work_for_a_signed_in_page(client, host):
    with system_context():  # as the sign-in page does (last_login is written)
        client.force_login(host)
    response = client.get("/me/")
    assert response.status_code == 200
    assert response.wsgi_request.user == host
