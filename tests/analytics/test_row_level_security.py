"""Raw SQL under the runtime role: a host reads only their own aggregate rows; the pending
days and verify_ledger runs are the system's and the admins'."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from treasury.rls import ContextRole, rls_context

from .conftest import refresh

pytestmark = pytest.mark.django_db


def test_a_host_reads_only_their_own_aggregates(market, raw_sql):
    refresh()
    host = market.host
    with rls_context(user_id=host.pk, role=ContextRole.USER):
        owners = {row[0] for row in raw_sql("SELECT user_id FROM analytics_daily")}
        assert owners == {host.pk}
        assert raw_sql("SELECT count(*) FROM analytics_pending_days")[0][0] == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            raw_sql(
                "INSERT INTO analytics_daily (day, currency, user_id, gross_volume_cents,"
                " platform_fee_cents, refunds_cents, disputes_cents, payouts_cents,"
                " charge_count, computed_at) VALUES ('2026-01-01', 'SEK', %s, 1, 0, 0, 0, 0,"
                " 0, now())",
                [host.pk],
            )
        # Updates and deletes match no row a user may write.
        raw_sql("UPDATE analytics_daily SET gross_volume_cents = 0")
        raw_sql("DELETE FROM analytics_daily")
    with rls_context(user_id=None, role=ContextRole.ADMIN):
        rows = raw_sql(
            "SELECT gross_volume_cents FROM analytics_daily WHERE user_id = %s", [host.pk]
        )
        assert sum(r[0] for r in rows) == 15000
        platform = raw_sql(
            "SELECT count(*) FROM analytics_daily WHERE user_id IS NULL AND currency = 'SEK'"
        )
        assert platform[0][0] >= 1


def test_with_no_context_nothing_is_visible(market, raw_sql):
    refresh()
    assert raw_sql("SELECT count(*) FROM analytics_daily")[0][0] == 0
