"""Corrections in the admin: "Post adjustment" takes two balanced lines (blank extra rows
are no rows), amounts in major units read by the pages' one parser and bounded, accounts
searched by code or owner, totals in major units, and a second confirmation above
LEDGER_ADJUSTMENT_CONFIRM_ABOVE_MINOR; "Reverse this transaction" posts its mirror image in
full or in part, with a reason, audited."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance
from tests.factories import DEFAULT_PASSWORD, HostFactory
from tests.portal.conftest import book_sale
from treasury.models import AuditLog
from treasury.rls import system_context

pytestmark = pytest.mark.django_db

ADJUST = "/admin/ledger/ledgertransaction/adjust/"


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    return client


def adjustment(*lines: tuple[str, str, str], rows: int = 6, **fields: str) -> dict[str, str]:
    """The form as a browser sends it: `rows` rows, the unused ones blank (their type select
    still sends its first choice)."""
    body = {
        "reason": "Correcting a booking",
        "reference_id": "",
        "idempotency_key": fields.pop("idempotency_key", "adjust:test-1"),
        "lines-TOTAL_FORMS": str(rows),
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "0",
        "lines-MAX_NUM_FORMS": "20",
        **fields,
    }
    for index in range(rows):
        account, side, amount = lines[index] if index < len(lines) else ("", "", "")
        body.update(
            {
                f"lines-{index}-account": account,
                f"lines-{index}-type": side,
                f"lines-{index}-amount": amount,
                f"lines-{index}-currency": "",
            }
        )
    return body


def transactions() -> int:
    with system_context():
        return LedgerTransaction.objects.count()


def balance(code: str) -> int:
    with system_context():
        return account_balance(code=code)


def test_two_balanced_lines_are_posted_and_blank_rows_ignored(admin_client, admin_user, host):
    payable = user_code(host.pk, "payable", "USD")
    adjustments = platform_code("adjustments", "USD")
    response = admin_client.post(
        ADJUST, adjustment((adjustments, "debit", "12.50"), (payable, "credit", "12,50"))
    )
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert balance(payable) == 1250
    with system_context():
        posted = LedgerTransaction.objects.get(idempotency_key="adjust:test-1")
        audit = AuditLog.objects.get(action="ledger.adjustment", target_id=str(posted.pk))
    assert response["Location"].endswith(f"/ledger/ledgertransaction/{posted.pk}/change/")
    assert (posted.created_by_id, audit.user_id) == (admin_user.pk, admin_user.pk)
    # The transaction's page shows the amounts in major units.
    page = admin_client.get(response["Location"]).content.decode()
    assert page.count("$12.50") >= 2


def test_a_huge_amount_is_a_field_error_naming_the_amount(admin_client, host):
    payable = user_code(host.pk, "payable", "USD")
    adjustments = platform_code("adjustments", "USD")
    before = transactions()
    huge = "10000000000000000"  # 10**18 minor units
    response = admin_client.post(
        ADJUST, adjustment((adjustments, "debit", huge), (payable, "credit", huge))
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert page.count("must be at most $10,000,000,000.00") == 2
    assert re.search(r"errorlist[^>]*>\s*<li>must be at most", page)
    assert transactions() == before and balance(payable) == 0


def test_an_unbalanced_adjustment_says_so_in_major_units(admin_client, host):
    payable = user_code(host.pk, "payable", "USD")
    response = admin_client.post(
        ADJUST,
        adjustment(
            (platform_code("adjustments", "USD"), "debit", "10"), (payable, "credit", "9.99")
        ),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Not balanced in USD: debits $10.00, credits $9.99 (a difference of $0.01)" in page
    assert "$10.00" in page and "$9.99" in page  # the totals table


def test_one_line_or_a_line_without_type_or_amount_is_refused(admin_client, host):
    payable = user_code(host.pk, "payable", "USD")
    one = admin_client.post(ADJUST, adjustment((payable, "credit", "5")))
    assert one.status_code == 400 and b"An adjustment needs at least two lines." in one.content
    partial = admin_client.post(
        ADJUST,
        adjustment((platform_code("adjustments", "USD"), "debit", "5"), (payable, "", "")),
    )
    assert partial.status_code == 400
    assert b"debit or credit" in partial.content and b"enter an amount" in partial.content
    unknown = admin_client.post(
        ADJUST, adjustment(("platform:nope:usd", "debit", "5"), (payable, "credit", "5"))
    )
    assert unknown.status_code == 400 and b"pick one from the list" in unknown.content


def test_a_large_adjustment_is_posted_only_once_confirmed(admin_client, host, settings):
    settings.LEDGER_ADJUSTMENT_CONFIRM_ABOVE_MINOR = 100_000  # 1,000.00
    payable = user_code(host.pk, "payable", "USD")
    lines = (
        (platform_code("adjustments", "USD"), "debit", "1000.01"),
        (payable, "credit", "1000.01"),
    )
    before = transactions()
    first = admin_client.post(ADJUST, adjustment(*lines))
    page = first.content.decode()
    assert first.status_code == 200 and "This adjustment moves $1,000.01" in page
    assert "more than the\n    $1,000.00 that needs a second look" in page
    assert "Confirm and post adjustment" in page
    assert transactions() == before
    [token] = re.findall(r'name="confirmation" value="([^"]+)"', page)

    # A confirmation is of these lines: changed, they are asked about again.
    changed = dict(adjustment(*lines), confirmation=token)
    changed["lines-1-amount"] = changed["lines-0-amount"] = "1000.02"
    again = admin_client.post(ADJUST, changed)
    assert again.status_code == 200 and b"This adjustment moves $1,000.02" in again.content
    assert transactions() == before

    confirmed = admin_client.post(ADJUST, dict(adjustment(*lines), confirmation=token))
    assert confirmed.status_code == 302
    assert balance(payable) == 100001


def test_the_account_list_is_searched_by_code_or_owner(admin_client):
    ada = HostFactory(email="ada.lovelace@example.test", display_name="Ada Lovelace")
    other = HostFactory()
    book_sale(ada, 100)
    book_sale(other, 100)
    found = admin_client.get(ADJUST + "accounts/", {"q": "lovelace"}).json()["accounts"]
    assert [a["code"] for a in found] == [user_code(ada.pk, "payable", "USD")]
    assert "Ada Lovelace <ada.lovelace@example.test>" in found[0]["label"]
    platform = admin_client.get(ADJUST + "accounts/", {"q": "adjustments"}).json()["accounts"]
    assert platform_code("adjustments", "USD") in [a["code"] for a in platform]
    form = admin_client.get(ADJUST).content.decode()
    assert '<datalist id="ledger-accounts">' in form
    assert f'<option value="{platform_code("adjustments", "USD")}">' in form


def test_the_totals_are_read_by_the_server_in_major_units(admin_client, host):
    payable = user_code(host.pk, "payable", "EUR")
    body = adjustment(
        (platform_code("adjustments", "EUR"), "debit", "1.234,50"), (payable, "credit", "1234")
    )
    totals = admin_client.post(ADJUST + "totals/", body, HTTP_ACCEPT_LANGUAGE="de-DE").json()
    assert totals == {
        "totals": [
            {
                "currency": "EUR",
                "debits": "€1,234.50",
                "credits": "€1,234.00",
                "difference": "€0.50",
                "balanced": False,
            }
        ]
    }


def test_only_admins_post_adjustments_or_search_accounts(host):
    staff = HostFactory(is_staff=True)
    client = Client()
    assert client.login(email=staff.email, password=DEFAULT_PASSWORD)
    response = client.post(ADJUST, adjustment())
    assert response.status_code in (302, 403)
    assert client.get(ADJUST + "accounts/").status_code in (302, 403)


# --- Reverse this transaction ---


def reverse_form(**fields: str) -> dict[str, str]:
    return {"how": "full", "amount": "", "reason": "Booked twice", "idempotency_key": "rev:1"} | (
        fields
    )


def test_a_transaction_is_reversed_in_part_then_in_full_with_reasons_audited(
    admin_client, admin_user, host
):
    sale = book_sale(host, 250, "USD", platform_fee_cents=0)
    payable = user_code(host.pk, "payable", "USD")
    url = f"/admin/ledger/ledgertransaction/{sale.pk}/reverse/"
    assert (
        b"Reverse this transaction"
        in admin_client.get(f"/admin/ledger/ledgertransaction/{sale.pk}/change/").content
    )
    page = admin_client.get(url).content.decode()
    assert 'left to reverse: <strong id="left-to-reverse">$2.50</strong>' in page

    partial = admin_client.post(
        url, reverse_form(how="partial", amount="1,00", reason="Half the tickets were comps")
    )
    assert partial.status_code == 302
    assert balance(payable) == 150
    with system_context():
        first = LedgerTransaction.objects.get(idempotency_key="rev:1")
        audit = AuditLog.objects.get(action="ledger.reversal", target_id=str(first.pk))
    assert (first.reverses_id, first.created_by_id, first.metadata["reason"]) == (
        sale.pk, admin_user.pk, "Half the tickets were comps",
    )  # fmt: skip
    assert audit.user_id == admin_user.pk
    assert audit.details["reason"] == "Half the tickets were comps"
    assert audit.details["reverses"] == sale.pk
    assert (audit.before, audit.after["reversed_fraction"]) == ({"reversed_fraction": "0"}, "2/5")

    too_much = admin_client.post(
        url, reverse_form(how="partial", amount="1.51", idempotency_key="rev:2")
    )
    assert too_much.status_code == 400
    assert b"at most $1.50 is left to reverse" in too_much.content
    no_reason = admin_client.post(url, reverse_form(reason="", idempotency_key="rev:2"))
    assert no_reason.status_code == 400

    rest = admin_client.post(url, reverse_form(idempotency_key="rev:2"))
    assert rest.status_code == 302
    assert balance(payable) == 0
    done = admin_client.post(url, reverse_form(idempotency_key="rev:3"))
    assert done.status_code == 400 and b"already reversed in full" in done.content
    with system_context():
        assert AuditLog.objects.filter(action="ledger.reversal").count() == 2


def test_reversing_is_for_admins_only(host):
    sale = book_sale(host, 250)
    staff = HostFactory(is_staff=True)
    client = Client()
    assert client.login(email=staff.email, password=DEFAULT_PASSWORD)
    before = transactions()
    client.post(f"/admin/ledger/ledgertransaction/{sale.pk}/reverse/", reverse_form())
    assert transactions() == before
