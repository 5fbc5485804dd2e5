"""With DATABASE_REPLICA_URL, reports and analytics read from the replica; writes never go
there; without it everything stays on `default`."""

from __future__ import annotations

import pytest

from analytics.models import DailyAggregate
from ledger.models import LedgerEntry
from treasury import replica
from treasury.replica import REPLICA_ALIAS, ReplicaRouter, replica_reads


@pytest.fixture
def with_replica(monkeypatch):
    monkeypatch.setattr(replica, "replica_configured", lambda: True)


def test_without_a_replica_everything_stays_on_default():
    router = ReplicaRouter()
    token = replica._reading_from_replica.set(True)  # even inside replica_reads
    try:
        assert router.db_for_read(DailyAggregate) is None
        assert router.db_for_write(DailyAggregate) is None
    finally:
        replica._reading_from_replica.reset(token)
    assert replica.reporting_alias() == "default"


def test_reads_inside_replica_reads_go_to_the_replica(with_replica):
    router = ReplicaRouter()
    assert router.db_for_read(DailyAggregate) is None  # outside the block: default
    token = replica._reading_from_replica.set(True)
    try:
        assert router.db_for_read(DailyAggregate) == REPLICA_ALIAS
        assert router.db_for_read(LedgerEntry) == REPLICA_ALIAS  # a report's ledger reads
        assert router.db_for_write(DailyAggregate) is None  # writes: default
    finally:
        replica._reading_from_replica.reset(token)
    assert replica.reporting_alias() == REPLICA_ALIAS


def test_an_object_read_from_the_replica_is_written_to_the_primary(with_replica):
    row = DailyAggregate()
    row._state.db = REPLICA_ALIAS
    assert ReplicaRouter().db_for_write(DailyAggregate, instance=row) == "default"


def test_nothing_migrates_the_replica():
    router = ReplicaRouter()
    assert router.allow_migrate(REPLICA_ALIAS, "analytics") is False
    assert router.allow_migrate("owner", "analytics") is None  # OwnerMigratesRouter decides


@pytest.mark.django_db
def test_replica_reads_sets_the_readers_context_on_default_without_a_replica(host, raw_sql):
    with replica_reads(user=host) as alias:
        assert alias == "default"
        [(user_id, role)] = raw_sql(
            "SELECT current_setting('app.user_id', true), current_setting('app.role', true)"
        )
    assert (user_id, role) == (str(host.pk), "user")
