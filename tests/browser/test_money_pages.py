"""Where money is typed and corrected, in a real browser: a decimal comma is a decimal mark
and a payout is requested only once its confirmation (amount, fee, what arrives, when) is
confirmed; the admin posts a two-line adjustment (blank rows ignored, totals in major
units), is told a huge amount is too large, reverses a transaction in part; a partial
refund after an invoice gives a credit note whose totals match the ledger."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest

from disputes.models import Refund
from disputes.services import request_refund
from ledger.chart import platform_code, user_code
from ledger.models import LedgerEntry, LedgerTransaction
from ledger.selectors import account_balance
from payouts.models import Payout
from reporting.models import VatCreditNote
from tests.factories import DEFAULT_PASSWORD, AdminFactory, HostFactory
from tests.payouts.conftest import earn, onboard, payable
from tests.portal.conftest import book_sale
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import PHONE, screenshot, sign_in

pytestmark = pytest.mark.xdist_group("browser")

# Committed money in GBP only (see test_pages.py); each test uses fresh users and keys.
GBP = "GBP"


def sign_in_admin(page, admin, next_path: str) -> None:
    page.goto(f"/admin/login/?next={next_path}")
    page.fill("#id_username", admin.email)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


def balance(code: str) -> int:
    with system_context():
        return account_balance(code=code)


def test_a_decimal_comma_is_confirmed_before_the_payout_is_requested(
    browser, live_pages, stripe_standin
):
    host = HostFactory()
    onboard(stripe_standin, host)
    earn(stripe_standin, host, 10000, "gbp")  # 90.00 GBP available
    # A browser in German: the keypad's decimal comma.
    context = browser.new_context(
        base_url=live_pages.url, locale="de-DE", viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    sign_in(page, host, "/me/payouts/")
    assert "12,50" in page.inner_text("#id_amount_helptext")

    page.fill("#id_amount", "1,000")  # a thousand, or one? refused, not guessed
    page.click("#payout-form button[type=submit]")
    assert "is ambiguous" in page.inner_text("#id_amount-error")

    page.fill("#id_amount", "0,50")
    page.check("input[name=method][value=standard]")
    page.click("#payout-form button[type=submit]")
    page.wait_for_selector("#payout-confirmation")
    assert page.inner_text("[data-testid=confirm-amount]") == "£0.50"
    assert page.inner_text("[data-testid=confirm-fee]") == "None"
    assert page.inner_text("[data-testid=confirm-net]") == "£0.50"
    assert "business days" in page.inner_text("[data-testid=confirm-when]")
    with system_context():
        assert not Payout.objects.filter(user=host).exists()  # nothing requested yet
    screenshot(page, "payout-confirmation-desktop")

    page.click("text=Change")  # back to the form with what was typed
    assert page.input_value("#id_amount") == "0,50"
    page.fill("#id_amount", "12,5")
    page.click("#payout-form button[type=submit]")
    page.wait_for_selector("#payout-confirmation")
    assert page.inner_text("[data-testid=confirm-amount]") == "£12.50"
    page.click("#confirm-form button[type=submit]")
    page.wait_for_url("**/me/payouts/*/")
    with system_context():
        payout = Payout.objects.get(user=host)
    assert (payout.amount_cents, payout.currency) == (1250, GBP)
    assert payable(host, GBP) == 9000 - 1250
    assert page.inner_text("[data-testid=payout-amount]") == "£12.50"
    context.close()

    phone = browser.new_context(base_url=live_pages.url, locale="fr-FR", **PHONE)
    phone_page = phone.new_page()
    sign_in(phone_page, host, "/me/payouts/")
    phone_page.fill("#id_amount", "1 000,00")
    phone_page.check("input[name=method][value=instant]")
    phone_page.click("#payout-form button[type=submit]")
    assert "exceeds the available balance" in phone_page.inner_text("#id_amount-error")
    phone_page.fill("#id_amount", "10")
    phone_page.click("#payout-form button[type=submit]")
    phone_page.wait_for_selector("#payout-confirmation")
    # Instant: 1.5% of 10.00 rounded up, 0.15; 9.85 arrives.
    assert phone_page.inner_text("[data-testid=confirm-fee]").startswith("£0.15")
    assert phone_page.inner_text("[data-testid=confirm-net]") == "£9.85"
    assert phone_page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone_page, "payout-confirmation-phone")
    phone.close()


def test_the_admin_posts_a_two_line_adjustment_and_is_stopped_at_a_huge_amount(open_page, settings):
    settings.LEDGER_ADJUSTMENT_CONFIRM_ABOVE_MINOR = 1_000_000_00
    admin = AdminFactory()
    host = HostFactory(display_name="Grace Hopper")
    book_sale(host, 100, GBP)
    payable_code = user_code(host.pk, "payable", GBP)
    page = open_page()
    sign_in_admin(page, admin, "/admin/ledger/ledgertransaction/adjust/")

    # The account is found by the owner's name.
    page.fill("#id_lines-0-account", "grace hop")
    page.wait_for_function(
        f"[...document.querySelectorAll('#ledger-accounts option')]"
        f".some(o => o.value === '{payable_code}')"
    )
    page.fill("#id_lines-0-account", payable_code)
    page.select_option("#id_lines-0-type", "credit")
    page.fill("#id_lines-0-amount", "12.50")
    page.fill("#id_lines-1-account", platform_code("adjustments", GBP))
    page.select_option("#id_lines-1-type", "debit")
    page.fill("#id_lines-1-amount", "12.5")
    page.fill("#id_reason", "Goodwill credit for the cancelled show")
    page.wait_for_selector("#adjustment-form[data-totals-ready=true]")
    row = page.locator("#adjustment-totals tr[data-currency=GBP] td")
    assert row.all_inner_texts() == ["GBP", "£12.50", "£12.50", "balanced"]
    screenshot(page, "admin-adjustment-desktop")

    page.click("#post-adjustment")  # four rows left blank
    page.wait_for_url("**/ledger/ledgertransaction/*/change/")
    assert "posted" in page.inner_text(".messagelist")
    assert balance(payable_code) == 100 + 1250

    page.goto("/admin/ledger/ledgertransaction/adjust/")
    huge = "10000000000000000"  # 10**18 minor units
    page.fill("#id_lines-0-account", payable_code)
    page.select_option("#id_lines-0-type", "credit")
    page.fill("#id_lines-0-amount", huge)
    page.fill("#id_lines-1-account", platform_code("adjustments", GBP))
    page.select_option("#id_lines-1-type", "debit")
    page.fill("#id_lines-1-amount", huge)
    page.fill("#id_reason", "Typo")
    page.click("#post-adjustment")
    page.wait_for_selector(".errorlist")
    errors = page.locator("#adjustment-lines .errorlist").all_inner_texts()
    assert errors == ["must be at most £10,000,000,000.00"] * 2
    assert balance(payable_code) == 100 + 1250
    screenshot(page, "admin-adjustment-too-large-desktop")


def test_the_admin_reverses_part_of_a_transaction_with_a_reason(open_page):
    admin = AdminFactory()
    host = HostFactory()
    sale = book_sale(host, 250, GBP)
    payable_code = user_code(host.pk, "payable", GBP)
    page = open_page()
    sign_in_admin(page, admin, f"/admin/ledger/ledgertransaction/{sale.pk}/change/")
    page.click("#reverse-transaction")
    page.wait_for_url(f"**/ledgertransaction/{sale.pk}/reverse/")
    assert page.inner_text("#left-to-reverse") == "£2.50"

    page.check("input[name=how][value=partial]")
    page.fill("#id_amount", "1,00")
    page.fill("#id_reason", "Two of five tickets were comps")
    page.click("#post-reversal")
    page.wait_for_url("**/ledgertransaction/*/change/")
    assert f"Transaction #{sale.pk} reversed (2/5 of it)" in page.inner_text(".messagelist")
    assert balance(payable_code) == 150
    with system_context():
        reversal = LedgerTransaction.objects.get(reverses=sale)
        audit = AuditLog.objects.get(action="ledger.reversal", target_id=str(reversal.pk))
    assert audit.user_id == admin.pk and audit.details["reason"] == "Two of five tickets were comps"

    page.goto(f"/admin/ledger/ledgertransaction/{sale.pk}/reverse/")
    assert page.inner_text("#left-to-reverse") == "£1.50"
    page.check("input[name=how][value=partial]")
    page.fill("#id_amount", "2")
    page.fill("#id_reason", "Too much")
    page.click("#post-reversal")
    assert "at most £1.50 is left to reverse" in page.inner_text(".errorlist")
    assert balance(payable_code) == 150


@pytest.mark.usefixtures("sync_jobs")
def test_an_invoice_then_a_partial_refund_gives_a_credit_note_matching_the_ledger(
    open_page, stripe_standin, settings
):
    settings.REPORTING_INVOICE_SERIES = f"BR{HostFactory().pk.hex[:8]}-{{year}}"
    settings.REPORTING_DEDUPE_SECONDS = 0
    host = HostFactory()
    charge_id = earn(stripe_standin, host, 2500, "gbp")  # fee 2.50
    today = datetime.now(UTC).date().isoformat()
    page = open_page()
    sign_in(page, host, "/me/reports/")

    def vat_report() -> list[dict[str, str]]:
        """Prepare the day's VAT invoices from the reports page and read the CSV it links."""
        page.goto("/me/reports/")
        page.fill("#id_vat-period_start", today)
        page.fill("#id_vat-period_end", today)
        page.select_option("#id_vat-country", "DE")
        page.fill("#id_vat-currency", GBP)
        page.select_option("#id_vat-format", "csv")
        page.click("text=Prepare VAT invoices")
        page.wait_for_url("**/me/reports/")
        page.click("table tbody tr >> nth=0 >> a >> nth=0")
        page.wait_for_url("**/me/reports/*/")
        href = page.locator("a.button.primary[download]").get_attribute("href")
        response = page.request.get(href)
        assert response.ok
        return list(csv.DictReader(io.StringIO(response.text())))

    first = vat_report()
    assert [(r["document"], r["reference_id"], r["gross"]) for r in first] == [
        ("invoice", charge_id, "2.50 GBP")
    ]

    with system_context():
        charge_txn = LedgerTransaction.objects.get(
            event_source="stripe_charge", reference_id=charge_id
        )
    request_refund(
        actor=AdminFactory(),
        charge_id=charge_id,
        amount_cents=1000,
        idempotency_key=f"r{charge_id}",
    )  # 10.00 of 25.00: 1.00 of the fee
    with system_context():
        refund = Refund.objects.get(charge_id=charge_id)
        related = [charge_txn.pk, refund.ledger_transaction_id]
        kept = sum(
            e.amount_cents if e.type == "credit" else -e.amount_cents
            for e in LedgerEntry.objects.filter(
                transaction_id__in=related, account__code__startswith="platform:fee_revenue:"
            )
        )
    assert kept == 150

    rows = vat_report()
    assert [(r["document"], r["gross_cents"]) for r in rows] == [
        ("invoice", "250"),
        ("credit_note", "-100"),
    ]
    assert rows[1]["credits_invoice"] == rows[0]["invoice_number"]
    assert (rows[1]["net"], rows[1]["vat"]) == ("-0.84 GBP", "-0.16 GBP")
    assert sum(int(r["gross_cents"]) for r in rows) == kept
    with system_context():
        note = VatCreditNote.objects.get(invoice__lines__reference_id=charge_id)
    assert (note.gross_cents, note.fee_cents) == (100, 100)
    assert f"{note.credit_note_number}.pdf" in page.inner_text("body")
    screenshot(page, "vat-credit-note-desktop")
