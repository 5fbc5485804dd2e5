"""What a person reads about money in the back office is in major units with the currency's
symbol ("$42.00"), the pages' one format, not minor units ("4200 USD")."""

from __future__ import annotations

from datetime import timedelta

from anomalies.detectors import detect_duplicate_charges
from tests.anomalies.conftest import DB, SINCE, UNTIL
from treasury.rls import system_context

pytestmark = DB


def test_an_anomaly_says_the_amount_as_people_read_it(books, make_host, make_buyer):
    host, buyer = make_host(), make_buyer()
    at = SINCE + timedelta(hours=2)
    books.charge(buyer=buyer, host=host, amount_cents=4200, at=at)
    books.charge(buyer=buyer, host=host, amount_cents=4200, at=at + timedelta(minutes=3))
    with system_context():
        [finding] = detect_duplicate_charges(since=SINCE, until=UNTIL)
    assert " $42.00 twice within 3.0 minutes" in finding.description
    assert "4200" not in finding.description
