"""The hosts' and artists' pages in a real browser: sign in, read the balance and the
earnings chart (Chart.js from our own static files), create a split rule with the shares
checked as they are typed, and request a payout that Stripe (the stand-in) pays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from payouts.models import Payout
from splits.models import SplitRule
from tests.factories import ArtistFactory, HostFactory
from tests.payouts.conftest import earn, onboard, payable
from tests.portal.conftest import book_sale
from tests.stripe.conftest import wait_until
from treasury.rls import system_context

from .conftest import screenshot, sign_in

pytestmark = pytest.mark.xdist_group("browser")

# These tests commit (the app serves them from other threads). Their money is in GBP, a
# currency no other test asserts the platform's absolute balances in (tests/ledger does for
# USD), so that the order in which test files run does not matter.
GBP = "GBP"


def test_a_host_signs_in_and_reads_the_balance_and_the_chart(open_page):
    host = HostFactory(display_name="Ada Host")
    book_sale(host, 12345, GBP)
    book_sale(host, 4000, GBP, fee_cents=120)  # today: 163.45 - 1.20
    now = timezone.now()
    for days_ago, cents in [(2, 5000), (5, 2750), (12, 8000), (25, 3300)]:
        book_sale(host, cents, GBP, at=now - timedelta(days=days_ago))
    book_sale(host, 2500, "EUR")
    page = open_page()

    sign_in(page, host)

    assert page.inner_text("[data-testid=available-GBP]") == "£352.75"
    assert page.inner_text("[data-testid=balance-EUR]") == "€25.00"
    page.select_option("#chart-form select[name=currency]", GBP)
    page.click("#chart-form button")
    page.wait_for_selector("#earnings-chart[data-rendered=true]")
    assert page.inner_text("[data-testid=earnings-total]") == "£352.75"
    # Chart.js came from the app and drew a bar a day, in exact cents.
    bars = page.evaluate("Chart.getChart('earnings-chart').data.datasets[0].data")
    assert (len(bars), bars[-1], bars[-3], bars[-26], sum(bars)) == (30, 16225, 5000, 3300, 35275)
    screenshot(page, "overview-desktop")

    phone = open_page(phone=True)
    sign_in(phone, host)
    phone.wait_for_selector("#earnings-chart[data-rendered=true]")
    # Nothing is wider than the phone's screen: the page does not scroll sideways.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "overview-phone")

    page.click("nav >> text=Ledger")
    page.select_option("#id_currency", GBP)
    page.click("form.filters button[type=submit]")
    assert page.locator("table.entries tbody tr").count() == 7  # six sales and one fee
    screenshot(page, "ledger-desktop")


def test_a_host_creates_a_split_rule_and_the_page_checks_the_shares(open_page):
    host, artist = HostFactory(), ArtistFactory()
    page = open_page()
    sign_in(page, host, "/me/splits/new/")
    save = page.locator("#save-split")

    page.fill("#id_name", "Friday club night")
    page.fill("#id_recipients-0-share", "70")
    assert "30% missing" in page.inner_text("#share-total")
    assert save.is_disabled()
    page.click("#add-recipient")
    page.fill("#id_recipients-1-recipient_id", str(artist.pk))
    page.fill("#id_recipients-1-share", "20")
    assert "Shares add up to 90%" in page.inner_text("#share-total")
    assert save.is_disabled()
    page.fill("#id_recipients-1-share", "30.5")
    assert "0.50% too much" in page.inner_text("#share-total")
    page.fill("#id_recipients-1-share", "30")
    assert page.inner_text("#share-total") == "Shares add up to 100% ✓"
    assert save.is_enabled()
    screenshot(page, "split-rule-form-desktop")

    save.click()
    page.wait_for_url("**/me/splits/*/")
    assert "Split rule “Friday club night” created." in page.inner_text(".messages")
    with system_context():
        rule = SplitRule.objects.get(owner=host)
    assert rule.rules == [
        {"recipient_id": str(host.pk), "share_bps": 7000},
        {"recipient_id": str(artist.pk), "share_bps": 3000},
    ]
    assert page.url.endswith(f"/me/splits/{rule.pk}/")

    phone = open_page(phone=True)
    sign_in(phone, host, f"/me/splits/{rule.pk}/edit/")
    phone.click(".recipient-row:nth-child(2) .remove-recipient")
    assert "30% missing" in phone.inner_text("#share-total")
    phone.fill("#id_recipients-0-share", "100")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "split-rule-edit-phone")
    phone.click("#save-split")
    phone.wait_for_url("**/me/splits/*/")
    assert "Saved as version 2." in phone.inner_text(".messages")
    with system_context():
        current = SplitRule.objects.get(lineage_id=rule.lineage_id, superseded_at=None)
    assert (current.version, current.rules) == (
        2,
        [{"recipient_id": str(host.pk), "share_bps": 10000}],
    )


def test_a_host_requests_a_payout_and_stripe_pays_it(open_page, stripe_standin):
    host = HostFactory()
    account = onboard(stripe_standin, host)
    earn(stripe_standin, host, 10000, "gbp")  # 90.00 GBP payable after the platform's 10%
    page = open_page()
    sign_in(page, host, "/me/payouts/")
    assert page.inner_text("[data-testid=available-GBP]") == "£90.00"

    page.fill("#id_amount", "90.01")
    page.click("#payout-form button[type=submit]")
    assert "exceeds the available balance of £90.00" in page.inner_text("#id_amount-error")
    with system_context():
        assert not Payout.objects.filter(user=host).exists()
    screenshot(page, "payout-refused-desktop")

    page.fill("#id_amount", "60.00")
    page.click("#payout-form button[type=submit]")
    assert page.inner_text("[data-testid=confirm-amount]") == "£60.00"
    page.click("#confirm-form button[type=submit]")
    page.wait_for_url("**/me/payouts/*/")
    with system_context():
        payout = Payout.objects.get(user=host)
    assert (payout.amount_cents, payout.stripe_account_id) == (6000, account.stripe_account_id)

    def paid() -> bool:
        with system_context():
            return Payout.objects.get(pk=payout.pk).status == "paid"

    assert wait_until(paid)
    page.reload()
    assert page.inner_text("h1 .badge") == "Paid"
    assert page.inner_text("[data-testid=payout-amount]") == "£60.00"
    assert payable(host, GBP) == 3000
    screenshot(page, "payout-paid-desktop")

    phone = open_page(phone=True)
    sign_in(phone, host, "/me/payouts/")
    assert phone.inner_text("[data-testid=available-GBP]") == "£30.00"
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, "payouts-phone")
