"""Staff groups: made idempotently; a support agent limited (django-guardian) to some hosts
sees only those hosts' payouts, charges, rules and users in the admin; ops see everyone's."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from overrides.permissions import STAFF_GROUPS, ensure_staff_groups
from payouts.services import initiate_payout
from tests.factories import DEFAULT_PASSWORD, HostFactory
from treasury.rls import system_context

from .conftest import DB, assign_host, onboard, rule, sell, staff

pytestmark = DB


def test_the_staff_groups_exist_and_recreating_them_changes_nothing():
    first = ensure_staff_groups()
    call_command("ensure_staff_groups", "--database", "default")
    assert ensure_staff_groups() == first
    groups = {g.name: g for g in Group.objects.filter(name__in=STAFF_GROUPS)}
    assert set(groups) == set(STAFF_GROUPS)
    ops = set(groups["ops"].permissions.values_list("codename", flat=True))
    support = set(groups["support"].permissions.values_list("codename", flat=True))
    finance = set(groups["finance"].permissions.values_list("codename", flat=True))
    assert {"adjust_ledger", "retry_webhook", "all_hosts", "view_payout"} <= ops
    assert "add_dispute_note" in support and "view_payout" in support
    assert not {"adjust_ledger", "hold_payout", "all_hosts", "change_payout"} & support
    assert {"hold_payout", "release_payout", "change_payout", "add_report"} <= finance
    assert "adjust_ledger" not in finance


def host_with_business(standin: Any) -> dict[str, Any]:
    host = HostFactory()
    onboard(standin, host)
    split = rule(owner=host, recipients=[(host, 10_000)])
    charge_id = sell(standin, amount_cents=10_000, host=host)
    with system_context():
        payout = initiate_payout(
            user=host,
            amount_cents=2_000,
            currency="USD",
            method="standard",
            idempotency_key=uuid.uuid4().hex,
        )
    return {"host": host, "rule": split, "charge_id": charge_id, "payout": payout}


def listed(client: Client, url: str) -> list[Any]:
    page = client.get(url)
    assert page.status_code == 200, page.content[:500]
    return list(page.context["cl"].result_list)


def signed_in(user: Any) -> Client:
    client = Client()
    assert client.login(email=user.email, password=DEFAULT_PASSWORD)
    return client


def test_a_support_agent_sees_only_assigned_hosts_objects(stripe_settings, settings):
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 10_001
    mine, theirs = host_with_business(stripe_settings), host_with_business(stripe_settings)
    agent = staff("support")
    assign_host(agent, mine["host"])
    client = signed_in(agent)

    payouts = listed(client, "/admin/payouts/payout/")
    assert [p.pk for p in payouts] == [mine["payout"].pk]
    charges = listed(client, "/admin/treasury/stripecharge/")
    assert {c.stripe_charge_id for c in charges} == {mine["charge_id"]}
    rules = listed(client, "/admin/splits/splitrule/")
    assert {r.owner_id for r in rules} == {mine["host"].pk}
    users = listed(client, "/admin/treasury/user/")
    assert [u.pk for u in users] == [mine["host"].pk]

    # Another host's object is not there, even by its URL.
    other = client.get(f"/admin/payouts/payout/{theirs['payout'].pk}/change/")
    assert other.status_code == 302
    own = client.get(f"/admin/payouts/payout/{mine['payout'].pk}/change/")
    assert own.status_code == 200

    # Read-only: no change permission on payouts.
    assert not agent.has_perm("payouts.change_payout")

    ops_client = signed_in(staff("ops"))
    seen = {p.pk for p in listed(ops_client, "/admin/payouts/payout/")}
    assert {mine["payout"].pk, theirs["payout"].pk} <= seen
