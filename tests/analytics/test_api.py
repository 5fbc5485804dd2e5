"""GET /api/reports/analytics: admins see the platform and anyone; hosts and artists only
their own rows (another user's id is a 404); bad filters are a 400 in the error shape."""

from __future__ import annotations

import pytest

from tests.factories import HostFactory

from .conftest import CURRENCY, refresh

pytestmark = pytest.mark.django_db
URL = "/api/reports/analytics"


@pytest.fixture
def computed(market):
    refresh()
    return market


def results(response) -> list[dict]:
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_an_admin_sees_the_platforms_totals_by_default(computed, client_for, admin_user):
    [row] = results(client_for(admin_user).get(URL, {"currency": "sek"}))
    assert row["user_id"] is None and row["currency"] == CURRENCY
    assert (row["gross_volume_cents"], row["platform_fee_cents"], row["refunds_cents"]) == (
        15000,
        1167,
        3333,
    )
    assert (row["payouts_cents"], row["charge_count"], row["day"]) == (
        2000,
        2,
        computed.day.isoformat(),
    )


def test_an_admin_sees_every_users_rows_or_one_users(computed, client_for, admin_user):
    client = client_for(admin_user)
    rows = results(client.get(URL, {"currency": CURRENCY, "scope": "users"}))
    by_user = {row["user_id"]: row for row in rows}
    assert by_user[str(computed.host.pk)]["gross_volume_cents"] == 15000
    assert by_user[str(computed.artist.pk)]["payouts_cents"] == 2000

    [row] = results(client.get(URL, {"userId": str(computed.artist.pk)}))
    assert (row["user_id"], row["payouts_cents"]) == (str(computed.artist.pk), 2000)


def test_a_host_sees_only_their_own_rows(computed, client_for):
    [row] = results(client_for(computed.host).get(URL))
    assert row["user_id"] == str(computed.host.pk)
    assert (row["gross_volume_cents"], row["payouts_cents"]) == (15000, 0)
    # Asking for the platform's scope changes nothing for them.
    assert results(client_for(computed.host).get(URL, {"scope": "users"})) == [row]


def test_an_artist_sees_their_payouts(computed, client_for):
    [row] = results(client_for(computed.artist).get(URL, {"currency": "SEK"}))
    assert (row["user_id"], row["payouts_cents"], row["gross_volume_cents"]) == (
        str(computed.artist.pk),
        2000,
        0,
    )


def test_another_users_rows_are_a_404_and_a_stranger_sees_nothing(computed, client_for):
    response = client_for(computed.host).get(URL, {"userId": str(computed.artist.pk)})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"

    assert results(client_for(HostFactory()).get(URL)) == []


def test_filters_and_pagination(computed, client_for, admin_user):
    client = client_for(admin_user)
    day = computed.day.isoformat()
    assert len(results(client.get(URL, {"currency": CURRENCY, "from": day, "to": day}))) == 1
    assert results(client.get(URL, {"currency": "NOK", "from": day, "to": day})) == []
    assert results(client.get(URL, {"currency": CURRENCY, "to": "2000-01-01"})) == []

    page = client.get(URL, {"currency": CURRENCY, "scope": "users", "limit": 1}).json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "not-a-date"}, "from"),
        ({"currency": "XXX"}, "currency"),
        ({"from": "2026-02-01", "to": "2026-01-01"}, "to"),
        ({"scope": "everything"}, "scope"),
        ({"userId": "42"}, "userId"),
    ],
)
def test_bad_filters_are_a_400_that_says_what_is_wrong(client_for, admin_user, params, field):
    response = client_for(admin_user).get(URL, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"]


def test_anonymous_callers_are_refused(api_client, db):
    response = api_client.get(URL)
    assert response.status_code == 401
    assert "error" in response.json()
