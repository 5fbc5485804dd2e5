"""The isolation forest: deterministic for a seed, persisted with its metadata, and it picks
an extreme outlier out of ordinary trade."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest

from anomalies import forest
from anomalies.services import run_detectors
from tests.anomalies.conftest import DB, SINCE, UNTIL
from treasury.rls import system_context

pytestmark = DB


@pytest.fixture
def ordinary_trade(books, make_host, make_buyer):
    """Three weeks of ordinary sales by three hosts, then one absurd charge at 3 am."""
    rng = random.Random(3)
    hosts = [make_host() for _ in range(3)]
    buyers = [make_buyer() for _ in range(6)]
    typical = {h.pk: rng.randint(2000, 6000) for h in hosts}
    for day in range(21, 0, -1):
        for host in hosts:
            for _ in range(2):
                at = SINCE - timedelta(days=day, hours=-rng.randint(10, 21))
                amount = int(rng.lognormvariate(0, 0.2) * typical[host.pk])
                books.charge(buyer=rng.choice(buyers), host=host, amount_cents=amount, at=at)
    today = [
        books.charge(
            buyer=rng.choice(buyers),
            host=host,
            amount_cents=typical[host.pk],
            at=SINCE + timedelta(hours=rng.randint(10, 21)),
        )
        for host in hosts
    ]
    outlier = books.charge(
        buyer=buyers[0], host=hosts[0], amount_cents=typical[hosts[0].pk] * 60,
        at=SINCE + timedelta(hours=3, minutes=7),
    )  # fmt: skip
    return today, outlier


def test_training_is_deterministic_for_a_seed(ordinary_trade):
    with system_context():
        samples = forest.charge_samples(since=SINCE - timedelta(days=30), until=UNTIL)
    first = forest.fit_forest(samples, seed=11)
    second = forest.fit_forest(samples, seed=11)
    other = forest.fit_forest(samples, seed=12)
    matrix = forest._matrix(samples)
    assert list(first.score_samples(matrix)) == list(second.score_samples(matrix))
    assert list(first.score_samples(matrix)) != list(other.score_samples(matrix))


def test_the_forest_flags_an_extreme_outlier_and_not_ordinary_sales(ordinary_trade, forest_storage):
    today, outlier = ordinary_trade
    with system_context():
        trained = forest.train_forest(kind="charge", until=SINCE)
    assert trained is not None
    assert trained.metadata["samples"] == 126
    assert trained.metadata["seed"] == 42

    summary = run_detectors(since=SINCE, until=UNTIL, names=["isolation_forest"])

    flagged = {a.subject_id: a for a in summary.created}
    assert str(outlier.pk) in flagged
    assert not {str(t.pk) for t in today} & set(flagged)
    features = flagged[str(outlier.pk)].features
    assert features["amount_vs_history"] > 20
    assert features["kind"] == "charge"


def test_the_model_is_stored_with_a_metadata_sidecar_and_reloads(ordinary_trade, forest_storage):
    with system_context():
        trained = forest.train_forest(kind="charge", until=SINCE)
        samples = forest.charge_samples(since=SINCE, until=UNTIL)
    latest = json.loads((forest_storage / "anomalies/forest/charge-latest.json").read_text())
    assert latest["model_path"] == trained.metadata["model_path"]
    assert latest["features"] == list(forest.CHARGE_FEATURES)
    assert (forest_storage / latest["model_path"]).exists()
    loaded = forest.load_forest(kind="charge")
    assert forest.score_samples(loaded, samples) == forest.score_samples(trained, samples)


def test_too_little_history_trains_nothing_and_scores_nothing(books, make_host, make_buyer):
    books.charge(buyer=make_buyer(), host=make_host(), amount_cents=1000, at=SINCE)
    with system_context():
        assert forest.train_forest(kind="charge", until=UNTIL) is None
        assert forest.detect_with_forest(since=SINCE, until=UNTIL) == []
