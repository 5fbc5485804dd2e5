from __future__ import annotations

import uuid

import pytest

from ledger.chart import platform_code, user_code
from ledger.selectors import account_balance
from ledger.services import credit, debit, post_transaction
from tests.factories import HostFactory
from tests.ledger.conftest import book_counts
from treasury.models import AuditLog
from treasury.rls import system_context

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_sales(host, artist):
    """Two sales with this test's own references (committed rows of other tests exist)."""
    run = uuid.uuid4().hex[:10]
    for n, (who, cents) in enumerate([(host, 900), (artist, 400)]):
        post_transaction(
            idempotency_key=f"sale:{run}:{n}",
            event_source=f"sale_{run}",
            reference_id=f"ch_{run}_{n}",
            entries=[
                debit(platform_code("stripe_balance", "USD"), cents + 100, "USD"),
                credit(user_code(who.pk, "payable", "USD"), cents, "USD"),
                credit(platform_code("fee_revenue", "USD"), 100, "USD"),
            ],
        )
    return run


def adjustment(amount: int = 250, **overrides):
    body = {
        "idempotency_key": "adjust:1",
        "reason": "goodwill credit for a cancelled show",
        "entries": [
            {
                "account": "platform:adjustments:usd",
                "type": "debit",
                "amount_cents": amount,
                "currency": "USD",
            },
            {
                "account": "platform:stripe_balance:usd",
                "type": "credit",
                "amount_cents": amount,
                "currency": "usd",
            },
        ],
    }
    body.update(overrides)
    return body


def test_a_host_lists_only_their_own_entries(client_for, host, artist, two_sales):
    body = client_for(host).get("/api/ledger/entries").json()
    assert body["count"] == 1
    [entry] = body["results"]
    assert (entry["user_id"], entry["amount_cents"], entry["type"]) == (str(host.pk), 900, "credit")
    assert entry["account"] == f"user:{host.pk}:payable:usd"


def test_asking_for_another_users_entries_is_a_404(client_for, host, artist, two_sales):
    response = client_for(host).get(f"/api/ledger/entries/?userId={artist.pk}")
    assert response.status_code == 404
    assert response.json()["error"]["fields"] == {"userId": ["not found"]}


def test_an_admin_sees_and_filters_all_entries(client_for, admin_user, artist, two_sales):
    client = client_for(admin_user)
    source = f"sale_{two_sales}"
    assert client.get(f"/api/ledger/entries?event_source={source}").json()["count"] == 6
    only_artist = client.get(f"/api/ledger/entries?userId={artist.pk}&currency=usd").json()
    assert [e["amount_cents"] for e in only_artist["results"]] == [400]
    paged = client.get(f"/api/ledger/entries?limit=2&offset=2&event_source={source}").json()
    assert paged["count"] == 6
    assert len(paged["results"]) == 2


@pytest.mark.parametrize(
    ("query", "field"),
    [("currency=ABC", "currency"), ("from=yesterday", "from"), ("userId=42", "userId")],
)
def test_bad_filters_are_400(client_for, host, query, field):
    response = client_for(host).get(f"/api/ledger/entries?{query}")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_balances_are_the_callers_own(client_for, host, two_sales):
    body = client_for(host).get("/api/ledger/balances").json()
    assert body["results"] == [
        {
            "code": f"user:{host.pk}:payable:usd",
            "kind": "liability",
            "currency": "USD",
            "owner_id": str(host.pk),
            "balance_cents": 900,
        }
    ]


def test_an_admin_posts_an_audited_adjustment_once(client_for, admin_user, two_sales):
    client = client_for(admin_user)
    with system_context():
        adjustments_before = account_balance(code="platform:adjustments:usd")
        stripe_before = account_balance(code="platform:stripe_balance:usd")
    first = client.post("/api/ledger/entries", adjustment(), format="json")
    assert first.status_code == 201, first.content
    again = client.post("/api/ledger/entries", adjustment(), format="json")
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["metadata"] == {"reason": "goodwill credit for a cancelled show"}
    with system_context():
        audits = AuditLog.objects.filter(action="ledger.adjustment")
        assert audits.count() == 1
        assert audits.get().user_id == admin_user.pk
    balances = client.get("/api/ledger/balances?currency=USD").json()["results"]
    by_code = {b["code"]: b["balance_cents"] for b in balances}
    assert by_code["platform:adjustments:usd"] - adjustments_before == 250
    assert by_code["platform:stripe_balance:usd"] - stripe_before == -250


def test_the_idempotency_key_header_works_and_a_new_body_is_409(client_for, admin_user):
    client = client_for(admin_user)
    body = adjustment()
    del body["idempotency_key"]
    assert (
        client.post(
            "/api/ledger/entries", body, format="json", HTTP_IDEMPOTENCY_KEY="k1"
        ).status_code
        == 201
    )
    before = book_counts()
    conflict = client.post(
        "/api/ledger/entries", adjustment(amount=251), format="json", HTTP_IDEMPOTENCY_KEY="k1"
    )
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert book_counts() == before


@pytest.mark.parametrize(
    ("change", "status", "field_or_message"),
    [
        (lambda b: b["entries"][1].update(amount_cents=249), 400, "unbalanced in USD"),
        (lambda b: b["entries"][0].update(amount_cents=0), 400, "entries.0.amount_cents"),
        (lambda b: b["entries"][0].update(amount_cents=2.5), 400, "entries.0.amount_cents"),
        (lambda b: b["entries"][0].update(amount_cents="250"), 400, "entries.0.amount_cents"),
        (lambda b: b["entries"][0].update(currency="XYZ"), 400, "entries.0.currency"),
        (lambda b: b["entries"][0].update(currency="EUR"), 400, "holds USD, not EUR"),
        (lambda b: b["entries"][0].update(account="platform:nope:usd"), 400, "unknown account"),
        (lambda b: b.update(reason=""), 400, "reason"),
        (lambda b: b.update(entries=b["entries"][:1]), 400, "entries"),
        (lambda b: b.pop("idempotency_key"), 400, "idempotency_key"),
    ],
)
def test_bad_adjustments_are_refused_and_write_nothing(
    client_for, admin_user, change, status, field_or_message
):
    body = adjustment()
    change(body)
    before = book_counts()
    response = client_for(admin_user).post("/api/ledger/entries", body, format="json")
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert field_or_message in error["message"] or field_or_message in error["fields"]
    assert book_counts() == before


def test_a_host_may_not_post_adjustments(client_for, host):
    before = book_counts()
    response = client_for(host).post("/api/ledger/entries", adjustment(), format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert book_counts() == before


def test_anonymous_callers_get_401(api_client):
    assert api_client.get("/api/ledger/entries").status_code == 401


def test_the_admin_adjust_screen_posts_and_audits(admin_user, two_sales):
    from django.test import Client

    from tests.factories import DEFAULT_PASSWORD

    client = Client()
    client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    assert client.get("/admin/ledger/ledgertransaction/adjust/").status_code == 200
    form = {
        "reason": "fix a mis-posted fee",
        "idempotency_key": "adjust:admin-screen",
        "reference_id": "",
        "lines-TOTAL_FORMS": "2",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "2",
        "lines-MAX_NUM_FORMS": "1000",
        "lines-0-account": "platform:fee_revenue:usd",
        "lines-0-type": "debit",
        "lines-0-amount": "0.50",  # major units, read by the pages' parser
        "lines-0-currency": "USD",
        "lines-1-account": "platform:adjustments:usd",
        "lines-1-type": "credit",
        "lines-1-amount": "0.50",
        "lines-1-currency": "usd",
    }
    response = client.post("/admin/ledger/ledgertransaction/adjust/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    with system_context():
        assert AuditLog.objects.filter(action="ledger.adjustment").count() == 1
    unbalanced = {**form, "idempotency_key": "adjust:bad", "lines-1-amount": "0.49"}
    page = client.post("/admin/ledger/ledgertransaction/adjust/", unbalanced)
    assert page.status_code in (200, 400)  # the form again, with what is wrong
    assert b"Not balanced in USD" in page.content


def test_other_hosts_entries_are_absent_from_lists(client_for, two_sales):
    stranger = HostFactory()
    assert client_for(stranger).get("/api/ledger/entries").json()["count"] == 0
