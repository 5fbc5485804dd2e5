"""PostgreSQL, not Python, keeps one owner's split rules from another (as treasury_app)."""

from __future__ import annotations

import pytest

from tests.factories import SplitRuleFactory
from treasury.rls import ContextRole, rls_context, system_context

pytestmark = pytest.mark.django_db


def test_a_host_raw_select_returns_only_their_own_rules(raw_sql, host, other_host):
    mine = SplitRuleFactory.create_batch(2, owner=host)
    SplitRuleFactory(owner=other_host)
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        rows = raw_sql("SELECT id, owner_id FROM split_rules ORDER BY id")
    assert rows == [(rule.pk, host.pk) for rule in mine]


def test_no_context_sees_no_rule(raw_sql, host):
    SplitRuleFactory(owner=host)
    assert raw_sql("SELECT count(*) FROM split_rules") == [(0,)]


def test_admin_and_system_see_every_owners_rules(raw_sql, admin_user, host, other_host):
    rules = [SplitRuleFactory(owner=host), SplitRuleFactory(owner=other_host)]
    expected = {rule.pk for rule in rules}
    with rls_context(user_id=admin_user.pk, role=ContextRole.ADMIN):
        assert expected <= {row[0] for row in raw_sql("SELECT id FROM split_rules")}
    with system_context():
        assert expected <= {row[0] for row in raw_sql("SELECT id FROM split_rules")}


def test_a_host_cannot_write_a_rule_for_someone_else(raw_sql, host, other_host):
    theirs = SplitRuleFactory(owner=other_host, is_default=False)
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        raw_sql("UPDATE split_rules SET is_default = true WHERE id = %s", [theirs.pk])
    with system_context():
        assert raw_sql("SELECT is_default FROM split_rules WHERE id = %s", [theirs.pk]) == [
            (False,)
        ]
