"""Split rules from the page: shares typed in percent become exact basis points; shares
that do not add up to 100%, a bad share or a recipient who is not a host or artist is a
field error and nothing is written; editing writes the next version."""

from __future__ import annotations

import re
import uuid

import pytest

from splits.models import SplitRule
from tests.factories import SplitRuleFactory, UserFactory
from treasury.rls import system_context

from .conftest import footprint

pytestmark = pytest.mark.django_db


def rule_form(name: str, *recipients: tuple[object, str], is_default: bool = False) -> dict:
    body = {
        "name": name,
        "recipients-TOTAL_FORMS": str(len(recipients)),
        "recipients-INITIAL_FORMS": "0",
        "recipients-MIN_NUM_FORMS": "1",
        "recipients-MAX_NUM_FORMS": "100",
    }
    if is_default:
        body["is_default"] = "on"
    for index, (recipient, share) in enumerate(recipients):
        body[f"recipients-{index}-recipient_id"] = str(getattr(recipient, "pk", recipient))
        body[f"recipients-{index}-share"] = share
    return body


def errors(content: bytes) -> list[str]:
    return re.findall(r'<p class="error"[^>]*>([^<]*)</p>', content.decode()) + re.findall(
        r'<div class="form-errors" role="alert">\s*<p>([^<]*)</p>', content.decode()
    )


def test_a_host_creates_a_rule_with_shares_in_percent(signed_in, host, artist):
    response = signed_in(host).post(
        "/me/splits/new/",
        rule_form("Main stage", (host, "66.67"), (artist, "33,33"), is_default=True),
    )
    with system_context():
        rule = SplitRule.objects.get(owner=host)
    assert (response.status_code, response["Location"]) == (302, f"/me/splits/{rule.pk}/")
    assert rule.rules == [
        {"recipient_id": str(host.pk), "share_bps": 6667},
        {"recipient_id": str(artist.pk), "share_bps": 3333},
    ]
    assert (rule.name, rule.is_default, rule.version, rule.platform_fee_bps) == (
        "Main stage", True, 1, 1000,
    )  # fmt: skip


def test_editing_a_rule_writes_its_next_version(signed_in, host, artist):
    rule = SplitRuleFactory(owner=host, name="Tour")
    client = signed_in(host)
    form = client.get(f"/me/splits/{rule.pk}/edit/")
    assert form.status_code == 200 and b'value="100"' in form.content
    response = client.post(
        f"/me/splits/{rule.pk}/edit/", rule_form("Tour 2027", (host, "70"), (artist, "30"))
    )
    with system_context():
        current = SplitRule.objects.get(lineage_id=rule.lineage_id, superseded_at=None)
        rule.refresh_from_db()
    assert response["Location"] == f"/me/splits/{current.pk}/"
    assert (current.version, current.name) == (2, "Tour 2027")
    assert [r["share_bps"] for r in current.rules] == [7000, 3000]
    assert rule.superseded_at is not None and rule.rules[0]["share_bps"] == 10000
    # The old version can be read, not edited.
    assert client.get(f"/me/splits/{rule.pk}/").status_code == 200
    assert client.get(f"/me/splits/{rule.pk}/edit/").status_code == 404


@pytest.mark.parametrize(
    ("shares", "message"),
    [
        (("70", "20"), "Shares add up to 90%: they must add up to exactly 100%."),
        (("70", "30.01"), "Shares add up to 100.01%: they must add up to exactly 100%."),
        (("70", "abc"), "enter a number"),
        (("70", "29.9950"), "at most two decimals"),
        (("100", "0"), "must be more than 0% and at most 100%"),
        (("150", "-50"), "must be more than 0% and at most 100%"),
    ],
)
def test_shares_that_are_not_100_percent_are_refused_and_change_nothing(
    signed_in, host, artist, shares, message
):
    before = footprint()
    response = signed_in(host).post(
        "/me/splits/new/", rule_form("Bad", (host, shares[0]), (artist, shares[1]))
    )
    assert response.status_code == 400
    assert any(message in error for error in errors(response.content)), errors(response.content)
    assert footprint() == before


def test_a_recipient_who_is_not_a_host_or_artist_is_a_field_error(signed_in, host):
    buyer = UserFactory()
    before = footprint()
    for stranger in (buyer.pk, uuid.uuid4()):
        response = signed_in(host).post(
            "/me/splits/new/", rule_form("Bad", (host, "50"), (stranger, "50"))
        )
        assert response.status_code == 400
        assert f"recipient {stranger} is not an active host or artist" in errors(response.content)
    assert footprint() == before


def test_a_recipient_twice_and_a_missing_name_are_field_errors(signed_in, host):
    before = footprint()
    response = signed_in(host).post("/me/splits/new/", rule_form("", (host, "50"), (host, "50")))
    assert response.status_code == 400
    found = errors(response.content)
    assert "This field is required." in found and "appears more than once" in found
    assert footprint() == before


def test_a_rule_with_no_recipients_is_refused(signed_in, host):
    before = footprint()
    response = signed_in(host).post("/me/splits/new/", rule_form("Empty"))
    assert response.status_code == 400
    assert "Please submit at least 1 form." in errors(response.content)
    assert footprint() == before


def test_archiving_a_rule_takes_it_off_the_list(signed_in, host):
    rule = SplitRuleFactory(owner=host, name="Old tour")
    client = signed_in(host)
    listed = f'href="/me/splits/{rule.pk}/">Old tour</a>'.encode()
    assert listed in client.get("/me/splits/").content
    response = client.post(f"/me/splits/{rule.pk}/archive/")
    assert (response.status_code, response["Location"]) == (302, "/me/splits/")
    page = client.get("/me/splits/").content
    assert listed not in page and "Split rule “Old tour” archived.".encode() in page
    assert listed in client.get("/me/splits/?archived=1").content
    with system_context():
        rule.refresh_from_db()
    assert rule.archived_at is not None


def test_a_share_with_a_decimal_comma_is_read_as_the_payout_form_reads_amounts(
    signed_in, host, artist
):
    response = signed_in(host).post(
        "/me/splits/new/",
        rule_form("Comma", (host, "99,5"), (artist, "0,5 %")),
        HTTP_ACCEPT_LANGUAGE="en-US",
    )
    assert response.status_code == 302
    with system_context():
        rule = SplitRule.objects.get(owner=host)
    assert [r["share_bps"] for r in rule.rules] == [9950, 50]
