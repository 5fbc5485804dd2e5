"""/api/split-rules: the round trip a host makes, and every way it can go wrong."""

from __future__ import annotations

from uuid import uuid4

import pytest

from splits.models import SplitRule
from tests.factories import SplitRuleFactory
from treasury.models import AuditLog
from treasury.rls import system_context

pytestmark = pytest.mark.django_db


def rule_count(owner=None) -> int:
    """Every rule (for "nothing was written"), or one owner's: tests that commit
    (committed_db) leave rows behind, so absolute counts are per owner."""
    with system_context():
        rules = SplitRule.objects.all()
        return (rules.filter(owner=owner) if owner else rules).count()


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_create_list_update_and_archive_round_trip(client_for, host, artist, rule_body):
    client = client_for(host)
    created = client.post("/api/split-rules", rule_body(is_default=True), format="json")
    assert created.status_code == 201, created.content
    rule = created.json()
    assert rule["owner_id"] == str(host.pk)
    assert (rule["version"], rule["is_default"], rule["platform_fee_bps"]) == (1, True, 1000)
    assert (rule["stripe_fee_bearer"], rule["dispute_loss_bearer"]) == ("platform", "platform")
    assert [r["share_bps"] for r in rule["recipients"]] == [7000, 3000]

    listed = client.get("/api/split-rules/")
    assert listed.status_code == 200
    assert listed.json()["count"] == 1
    assert listed.json()["results"][0]["id"] == rule["id"]

    updated = client.put(
        f"/api/split-rules/{rule['id']}",
        {"recipients": [{"recipient_id": str(artist.pk), "share_bps": 10000}]},
        format="json",
    )
    assert updated.status_code == 200, updated.content
    new = updated.json()
    assert new["id"] != rule["id"]
    assert (new["version"], new["lineage_id"], new["name"]) == (2, rule["lineage_id"], "Main stage")
    assert new["is_default"] is True

    old = client.get(f"/api/split-rules/{rule['id']}/")
    assert old.status_code == 200
    assert old.json()["superseded_at"] is not None
    assert [r["share_bps"] for r in old.json()["recipients"]] == [7000, 3000]
    assert [r["id"] for r in client.get("/api/split-rules").json()["results"]] == [new["id"]]

    assert client.delete(f"/api/split-rules/{new['id']}").status_code == 204
    assert client.get("/api/split-rules").json()["count"] == 0
    archived = client.get("/api/split-rules?include_archived=true").json()["results"]
    assert [(r["id"], r["archived_at"] is not None) for r in archived] == [(new["id"], True)]
    with system_context():
        actions = set(
            AuditLog.objects.filter(user=host, target_type="splits.splitrule").values_list(
                "action", flat=True
            )
        )
    assert actions == {"split_rule.create", "split_rule.update", "split_rule.archive"}


@pytest.mark.parametrize(("artist_share", "total"), [(2999, 9999), (3001, 10001)])
def test_shares_not_summing_to_100_percent_are_a_400_and_write_nothing(
    client_for, host, artist, rule_body, artist_share, total
):
    before = rule_count()
    body = rule_body()
    body["recipients"][1]["share_bps"] = artist_share
    error = assert_error(
        client_for(host).post("/api/split-rules", body, format="json"), 400, "invalid"
    )
    assert f"they sum to {total}" in error["message"]
    assert "recipients" in error["fields"]
    assert rule_count() == before


def test_an_update_to_a_bad_sum_is_refused_and_leaves_the_rule_current(
    client_for, host, artist, rule_body
):
    client = client_for(host)
    rule = client.post("/api/split-rules", rule_body(), format="json").json()
    body = {"recipients": [{"recipient_id": str(host.pk), "share_bps": 9999}]}
    assert_error(client.put(f"/api/split-rules/{rule['id']}", body, format="json"), 400, "invalid")
    assert client.get(f"/api/split-rules/{rule['id']}").json()["superseded_at"] is None
    assert rule_count(owner=host) == 1


def test_a_buyer_recipient_is_a_400_naming_them(client_for, host, buyer, rule_body):
    body = rule_body(
        recipients=[
            {"recipient_id": str(host.pk), "share_bps": 5000},
            {"recipient_id": str(buyer.pk), "share_bps": 5000},
        ]
    )
    error = assert_error(
        client_for(host).post("/api/split-rules", body, format="json"), 400, "invalid"
    )
    assert str(buyer.pk) in error["message"]
    assert "recipients.1.recipient_id" in error["fields"]
    assert rule_count(owner=host) == 0


def test_a_buyer_cannot_create_rules(client_for, buyer, rule_body):
    response = client_for(buyer).post("/api/split-rules", rule_body(), format="json")
    assert_error(response, 403, "permission_denied")
    assert rule_count(owner=buyer) == 0


def test_a_host_cannot_set_the_platform_fee_through_the_api(client_for, host, rule_body):
    response = client_for(host).post(
        "/api/split-rules", rule_body(platform_fee_bps=0), format="json"
    )
    error = assert_error(response, 403, "permission_denied")
    assert "platform_fee_bps" in error["fields"]


def test_an_admin_sets_a_negotiated_fee(client_for, admin_user, rule_body):
    body = rule_body(
        platform_fee_bps=500,
        platform_fee_fixed_cents=30,
        fixed_fee_currency="eur",
        stripe_fee_bearer="recipients",
    )
    response = client_for(admin_user).post("/api/split-rules", body, format="json")
    assert response.status_code == 201, response.content
    rule = response.json()
    assert (rule["platform_fee_bps"], rule["fixed_fee_currency"], rule["stripe_fee_bearer"]) == (
        500,
        "EUR",
        "recipients",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"recipients": []}, "recipients"),
        (
            {"recipients": [{"recipient_id": "nope", "share_bps": 10000}]},
            "recipients.0.recipient_id",
        ),
        ({"recipients": [{"recipient_id": "HOST", "share_bps": 70.5}]}, "recipients.0.share_bps"),
        ({"name": ""}, "name"),
        ({"stripe_fee_bearer": "buyers"}, "stripe_fee_bearer"),
    ],
)
def test_malformed_bodies_are_400s_that_name_the_field(client_for, host, rule_body, body, field):
    payload = rule_body(**body)
    for recipient in payload["recipients"]:
        if recipient.get("recipient_id") == "HOST":
            recipient["recipient_id"] = str(host.pk)
    error = assert_error(
        client_for(host).post("/api/split-rules", payload, format="json"), 400, "invalid"
    )
    assert field in error["fields"]


def test_another_hosts_rule_is_a_404_for_get_put_and_delete(client_for, host, other_host):
    theirs = SplitRuleFactory(owner=other_host)
    client = client_for(host)
    assert_error(client.get(f"/api/split-rules/{theirs.pk}"), 404, "not_found")
    assert_error(
        client.put(f"/api/split-rules/{theirs.pk}", {"name": "mine"}, format="json"),
        404,
        "not_found",
    )
    assert_error(client.delete(f"/api/split-rules/{theirs.pk}"), 404, "not_found")
    assert client.get("/api/split-rules").json()["count"] == 0
    with system_context():
        theirs.refresh_from_db()
    assert (theirs.name, theirs.archived_at, theirs.superseded_at) != ("mine", None, None)
    assert theirs.archived_at is None and theirs.superseded_at is None


def test_an_unknown_or_absurd_id_is_a_404(client_for, host):
    assert_error(client_for(host).get("/api/split-rules/424242"), 404, "not_found")
    assert_error(client_for(host).get(f"/api/split-rules/{10**30}"), 404, "not_found")


def test_an_admin_sees_and_filters_every_owners_rules(client_for, admin_user, host, other_host):
    tag = uuid4().hex[:12]  # committed tests may have left other rules: look at ours only
    SplitRuleFactory(owner=host, name=f"Main stage {tag}", is_default=True)
    SplitRuleFactory(owner=other_host, name=f"Side stage {tag}")
    SplitRuleFactory(owner=other_host, name=f"Backstage main {tag}")
    client = client_for(admin_user)

    def names(query: str) -> list[str]:
        response = client.get(f"/api/split-rules?limit=1000&{query}")
        assert response.status_code == 200, response.content
        return sorted(
            r["name"].removesuffix(f" {tag}")
            for r in response.json()["results"]
            if r["name"].endswith(tag)
        )

    assert names(f"name={tag}") == ["Backstage main", "Main stage", "Side stage"]
    assert names("name=MAIN") == ["Backstage main", "Main stage"]
    assert names("is_default=true") == ["Main stage"]
    assert names("is_default=false") == ["Backstage main", "Side stage"]
    page = client.get(f"/api/split-rules?name={tag}&limit=2&offset=2").json()
    assert (page["count"], len(page["results"])) == (3, 1)


def test_a_bad_filter_is_a_400(client_for, host):
    assert_error(client_for(host).get("/api/split-rules?is_default=perhaps"), 400, "invalid")


def test_the_schema_documents_the_split_rule_paths(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"get", "post"} <= set(schema["paths"]["/api/split-rules/"])
    assert {"get", "put", "delete"} <= set(schema["paths"]["/api/split-rules/{rule_id}/"])


def test_updating_a_superseded_version_is_a_409_naming_the_current_one(client_for, host, rule_body):
    client = client_for(host)
    first = client.post("/api/split-rules/", rule_body(), format="json").json()
    second = client.put(f"/api/split-rules/{first['id']}/", {"name": "v2"}, format="json").json()
    again = client.put(f"/api/split-rules/{first['id']}", {"name": "v2 again"}, format="json")
    error = assert_error(again, 409, "conflict")
    assert f"superseded by {second['id']}" in error["message"]
    # The same body again on the current version is no change: same id, no version 3.
    same = client.put(f"/api/split-rules/{second['id']}", {"name": "v2"}, format="json")
    assert (same.status_code, same.json()["id"], same.json()["version"]) == (200, second["id"], 2)
