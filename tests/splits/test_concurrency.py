"""Real commits from real threads: concurrent writes to one owner's rules stay consistent."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from splits.models import SplitRule
from splits.services import update_split_rule
from tests.factories import HostFactory, SplitRuleFactory
from treasury.errors import Conflict
from treasury.rls import system_context, user_context

pytestmark = pytest.mark.usefixtures("committed_db")


def run_in_threads(work: Callable[[int], object], threads: int) -> list[object]:
    """Each thread's result or exception, started together at a barrier."""
    outcomes: list[object] = []
    start = threading.Barrier(threads)

    def runner(n: int) -> None:
        try:
            start.wait()
            outcomes.append(work(n))
        except BaseException as exc:  # collected and asserted on by the test
            outcomes.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=runner, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=120)
    return outcomes


def test_concurrent_updates_of_one_version_make_exactly_one_next_version():
    host = HostFactory()
    rule = SplitRuleFactory(owner=host)

    def work(n: int) -> object:
        with user_context(host):
            return update_split_rule(rule=rule, actor=host, name=f"edit {n}").version

    outcomes = run_in_threads(work, threads=4)
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict"] * 3 + ["int"]
    assert all(isinstance(o, Conflict) or o == 2 for o in outcomes)
    with system_context():
        versions = list(
            SplitRule.objects.filter(lineage_id=rule.lineage_id)
            .order_by("version")
            .values_list("version", "superseded_at")
        )
    assert [v for v, _ in versions] == [1, 2]
    assert versions[0][1] is not None and versions[1][1] is None


def test_concurrent_new_defaults_leave_exactly_one_default():
    host = HostFactory()

    def work(n: int) -> object:
        with system_context():
            return SplitRuleFactory(owner=host, name=f"default {n}", is_default=True).pk

    outcomes = run_in_threads(work, threads=4)
    assert all(isinstance(o, int) for o in outcomes), outcomes
    with system_context():
        defaults = SplitRule.objects.filter(owner=host, is_default=True, superseded_at=None)
        assert defaults.count() == 1
        assert SplitRule.objects.filter(owner=host).count() == 4
