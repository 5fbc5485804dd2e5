"""Writing split rules: validation, versions, defaults, who may set the platform's terms."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction
from django.test import override_settings

from splits import selectors
from splits.allocation import allocate
from splits.models import SplitRule
from splits.services import archive_split_rule, create_split_rule, update_split_rule
from tests.factories import SplitRuleFactory, UserFactory
from treasury.errors import Conflict, Forbidden, InvalidInput, NotFound
from treasury.models import AuditLog
from treasury.rls import system_context, user_context

pytestmark = pytest.mark.django_db

PLATFORM_DEFAULTS = {
    "platform_fee_bps": 1000,
    "stripe_fee_bearer": "platform",
    "dispute_loss_bearer": "platform",
}


def seventy_thirty(host, artist) -> list[dict]:
    return [
        {"recipient_id": host.pk, "share_bps": 7000},
        {"recipient_id": artist.pk, "share_bps": 3000},
    ]


def rule_count(owner=None) -> int:
    """Every rule (for "nothing was written"), or one owner's: tests that commit
    (committed_db) leave rows behind, so absolute counts are per owner."""
    with system_context():
        rules = SplitRule.objects.all()
        return (rules.filter(owner=owner) if owner else rules).count()


def test_a_host_creates_a_rule_on_the_platform_terms_and_it_is_audited(host, artist):
    with user_context(host):
        rule = create_split_rule(
            owner=host,
            name="  Main stage ",
            recipients=seventy_thirty(host, artist),
            **PLATFORM_DEFAULTS,
        )
    assert (rule.name, rule.version, rule.superseded_at, rule.archived_at) == (
        "Main stage",
        1,
        None,
        None,
    )
    assert rule.rules == [
        {"recipient_id": str(host.pk), "share_bps": 7000},
        {"recipient_id": str(artist.pk), "share_bps": 3000},
    ]
    with system_context():
        audit = AuditLog.objects.get(action="split_rule.create", target_id=str(rule.pk))
    assert audit.user_id == host.pk
    assert audit.after["rules"] == rule.rules


@pytest.mark.parametrize(("shares", "total"), [((7000, 2999), 9999), ((7000, 3001), 10001)])
def test_shares_that_do_not_sum_to_100_percent_are_refused_naming_the_sum(
    host, artist, shares, total
):
    before = rule_count()
    recipients = [
        {"recipient_id": host.pk, "share_bps": shares[0]},
        {"recipient_id": artist.pk, "share_bps": shares[1]},
    ]
    with pytest.raises(InvalidInput, match=f"they sum to {total}") as error, user_context(host):
        create_split_rule(owner=host, name="x", recipients=recipients, **PLATFORM_DEFAULTS)
    assert "recipients" in error.value.fields
    assert rule_count() == before


HOST = object()  # stands for the `host` fixture's id in the parameters below


@pytest.mark.parametrize(
    ("recipients", "field"),
    [
        ([], "recipients"),
        ({"recipient_id": HOST, "share_bps": 10000}, "recipients"),
        ([{"recipient_id": "not-a-uuid", "share_bps": 10000}], "recipients.0.recipient_id"),
        ([{"share_bps": 10000}], "recipients.0.recipient_id"),
        ([{"recipient_id": HOST, "share_bps": 0}], "recipients.0.share_bps"),
        ([{"recipient_id": HOST, "share_bps": 10001}], "recipients.0.share_bps"),
        ([{"recipient_id": HOST, "share_bps": 10000.0}], "recipients.0.share_bps"),
        ([{"recipient_id": HOST, "share_bps": True}], "recipients.0.share_bps"),
        ([{"recipient_id": HOST, "share_bps": "10000"}], "recipients.0.share_bps"),
        ([{"recipient_id": HOST, "share_bps": 5000}] * 2, "recipients.1.recipient_id"),
    ],
)
def test_malformed_recipients_say_which_entry_is_wrong(host, recipients, field):
    def fill(item):
        return {k: host.pk if v is HOST else v for k, v in item.items()}

    recipients = fill(recipients) if isinstance(recipients, dict) else list(map(fill, recipients))
    with pytest.raises(InvalidInput) as error, user_context(host):
        create_split_rule(owner=host, name="x", recipients=recipients, **PLATFORM_DEFAULTS)
    assert field in error.value.fields


def test_a_buyer_cannot_be_a_recipient_and_the_error_names_them(host, buyer):
    recipients = [
        {"recipient_id": host.pk, "share_bps": 5000},
        {"recipient_id": buyer.pk, "share_bps": 5000},
    ]
    with pytest.raises(InvalidInput) as error, user_context(host):
        create_split_rule(owner=host, name="x", recipients=recipients, **PLATFORM_DEFAULTS)
    assert str(buyer.pk) in error.value.message
    assert list(error.value.fields) == ["recipients.1.recipient_id"]


def test_a_closed_account_cannot_be_a_recipient(host):
    gone = UserFactory(role="artist", is_active=False)
    recipients = [{"recipient_id": gone.pk, "share_bps": 10000}]
    with pytest.raises(InvalidInput, match=str(gone.pk)), user_context(host):
        create_split_rule(owner=host, name="x", recipients=recipients, **PLATFORM_DEFAULTS)


def test_a_buyer_cannot_own_a_rule(buyer, host):
    with pytest.raises(Forbidden), user_context(buyer):
        create_split_rule(
            owner=buyer,
            name="x",
            recipients=[{"recipient_id": host.pk, "share_bps": 10000}],
            **PLATFORM_DEFAULTS,
        )


def test_a_host_cannot_set_the_platform_fee_but_an_admin_can(host, artist, admin_user):
    recipients = seventy_thirty(host, artist)
    with pytest.raises(Forbidden) as error, user_context(host):
        create_split_rule(
            owner=host,
            name="x",
            recipients=recipients,
            platform_fee_bps=0,
            stripe_fee_bearer="platform",
            dispute_loss_bearer="platform",
        )
    assert set(error.value.fields) == {"platform_fee_bps"}
    with user_context(admin_user):
        rule = create_split_rule(
            owner=host,
            actor=admin_user,
            name="negotiated",
            recipients=recipients,
            platform_fee_bps=500,
            platform_fee_fixed_cents=30,
            fixed_fee_currency="usd",
            stripe_fee_bearer="recipients",
            dispute_loss_bearer="recipients",
        )
    assert (rule.platform_fee_bps, rule.fixed_fee_currency, rule.owner_id) == (500, "USD", host.pk)
    # The host may then edit the recipients and keep the negotiated terms, not change them.
    with user_context(host):
        renamed = update_split_rule(rule=rule, actor=host, name="negotiated v2")
        assert renamed.platform_fee_bps == 500
        with pytest.raises(Forbidden):
            update_split_rule(rule=renamed, actor=host, platform_fee_bps=600)


def test_a_fixed_fee_needs_its_currency(host, admin_user):
    with pytest.raises(InvalidInput) as error, user_context(admin_user):
        create_split_rule(
            owner=host,
            name="x",
            recipients=[{"recipient_id": host.pk, "share_bps": 10000}],
            platform_fee_bps=0,
            platform_fee_fixed_cents=30,
            stripe_fee_bearer="platform",
            dispute_loss_bearer="platform",
        )
    assert "fixed_fee_currency" in error.value.fields


def test_an_update_writes_a_new_version_and_keeps_the_old_one_for_its_charges(host, artist):
    rule = SplitRuleFactory(owner=host)
    with user_context(host):
        new = update_split_rule(rule=rule, actor=host, recipients=seventy_thirty(host, artist))
        old = selectors.get_split_rule(user=host, rule_id=rule.pk)
    assert (new.version, new.lineage_id, new.superseded_at) == (2, rule.lineage_id, None)
    assert old.superseded_at is not None
    assert old.rules == [{"recipient_id": str(host.pk), "share_bps": 10000}]
    # A charge split by version 1 is still split by version 1's terms.
    assert allocate(amount_cents=1000, currency="USD", rule=old).parts_cents == (100, 900)
    assert allocate(amount_cents=1000, currency="USD", rule=new).parts_cents == (100, 630, 270)
    with system_context():
        audit = AuditLog.objects.get(action="split_rule.update", target_id=str(new.pk))
    assert audit.before["id"] == str(rule.pk) and audit.after["version"] == 2


def test_an_update_that_changes_nothing_writes_no_version(host):
    rule = SplitRuleFactory(owner=host)
    with user_context(host):
        same = update_split_rule(rule=rule, actor=host, name=rule.name, platform_fee_bps=1000)
    assert same.pk == rule.pk
    assert rule_count(owner=host) == 1


def test_updating_a_superseded_version_is_a_conflict(host):
    rule = SplitRuleFactory(owner=host)
    with user_context(host):
        new = update_split_rule(rule=rule, actor=host, name="renamed")
        with pytest.raises(Conflict, match=f"superseded by {new.pk}"):
            update_split_rule(rule=rule, actor=host, name="lost update")


def test_unknown_fields_cannot_be_changed(host):
    rule = SplitRuleFactory(owner=host)
    with pytest.raises(InvalidInput) as error, user_context(host):
        update_split_rule(rule=rule, actor=host, owner_id=None, version=9)
    assert set(error.value.fields) == {"owner_id", "version"}


def test_another_hosts_rule_cannot_be_changed_or_archived(host, other_host):
    rule = SplitRuleFactory(owner=other_host)
    with user_context(host):
        with pytest.raises(NotFound):
            update_split_rule(rule=rule, actor=host, name="mine now")
        with pytest.raises(NotFound):
            archive_split_rule(rule=rule, actor=host)


def test_one_default_per_owner_the_new_default_takes_the_flag(host):
    first = SplitRuleFactory(owner=host, is_default=True)
    second = SplitRuleFactory(owner=host, is_default=True)
    with system_context():
        first.refresh_from_db()
        assert AuditLog.objects.filter(
            action="split_rule.default_cleared", target_id=str(first.pk)
        ).exists()
    assert (first.is_default, second.is_default) == (False, True)
    assert first.superseded_at is None  # the flag is not a term: no new version


def test_default_rule_for_falls_back_to_the_settings_rule(host):
    with system_context():
        fallback = selectors.default_rule_for(owner=host)
    assert fallback.split_rule_id is None
    assert fallback.platform_fee_bps == 1000
    assert [(r.recipient_id, r.share_bps) for r in fallback.recipients] == [(host.pk, 10000)]
    rule = SplitRuleFactory(owner=host, is_default=True)
    with system_context():
        assert selectors.default_rule_for(owner=host).split_rule_id == rule.pk
        archive_split_rule(rule=rule, actor=host)
        assert selectors.default_rule_for(owner=host).split_rule_id is None


@override_settings(
    SPLITS_DEFAULT_PLATFORM_FEE_BPS=500,
    SPLITS_DEFAULT_PLATFORM_FEE_FIXED_CENTS=30,
    SPLITS_DEFAULT_FIXED_FEE_CURRENCY="usd",
    SPLITS_DEFAULT_STRIPE_FEE_BEARER="recipients",
)
def test_the_settings_rule_follows_the_settings(host):
    with system_context():
        fallback = selectors.default_rule_for(owner=host)
    assert (
        fallback.platform_fee_bps,
        fallback.platform_fee_fixed_cents,
        fallback.fixed_fee_currency,
        fallback.stripe_fee_bearer,
    ) == (500, 30, "USD", "recipients")


@override_settings(SPLITS_DEFAULT_STRIPE_FEE_BEARER="nobody")
def test_invalid_default_settings_fail_the_system_check():
    from splits.checks import default_terms_check

    assert [e.id for e in default_terms_check()] == ["splits.E001"]


def test_archiving_archives_the_current_version_and_is_idempotent(host):
    rule = SplitRuleFactory(owner=host)
    with user_context(host):
        new = update_split_rule(rule=rule, actor=host, name="v2")
        archived = archive_split_rule(rule=rule, actor=host)  # any version names the rule
        again = archive_split_rule(rule=new, actor=host)
        assert selectors.split_rules_for(user=host).count() == 0
        with pytest.raises(Conflict, match="archived"):
            update_split_rule(rule=new, actor=host, name="v3")
    assert archived.pk == new.pk and archived.archived_at == again.archived_at
    with system_context():
        archives = AuditLog.objects.filter(
            action="split_rule.archive", target_type="splits.splitrule", user=host
        )
        assert list(archives.values_list("target_id", flat=True)) == [str(new.pk)]


def test_postgresql_refuses_edits_to_a_versions_terms_and_deletes(host, raw_sql):
    rule = SplitRuleFactory(owner=host)
    with system_context():
        for statement in (
            "UPDATE split_rules SET platform_fee_bps = 0 WHERE id = %s",
            "UPDATE split_rules SET rules = '[]' WHERE id = %s",
            "DELETE FROM split_rules WHERE id = %s",
        ):
            with pytest.raises(DatabaseError), transaction.atomic():
                raw_sql(statement, [rule.pk])
        rule.refresh_from_db()
    assert rule.platform_fee_bps == 1000


@pytest.mark.parametrize(
    "rules",
    [
        '[{"recipient_id": "%(id)s", "share_bps": 9999}]',
        '[{"recipient_id": "%(id)s", "share_bps": 10000.5}]',
        '[{"recipient_id": "%(id)s", "share_bps": 5000},'
        ' {"recipient_id": "%(id)s", "share_bps": 5000}]',
        "[]",
        '{"recipient_id": "%(id)s", "share_bps": 10000}',
    ],
)
def test_postgresql_refuses_recipients_that_do_not_make_100_percent(host, raw_sql, rules):
    with system_context(), pytest.raises(DatabaseError), transaction.atomic():
        raw_sql(
            "INSERT INTO split_rules (owner_id, name, rules, is_default, platform_fee_bps,"
            " platform_fee_fixed_cents, stripe_fee_bearer, dispute_loss_bearer, lineage_id,"
            " version, created_at, updated_at) VALUES (%s, 'x', %s, false, 0, 0, 'platform',"
            " 'platform', gen_random_uuid(), 1, now(), now())",
            [host.pk, rules % {"id": host.pk}],
        )
