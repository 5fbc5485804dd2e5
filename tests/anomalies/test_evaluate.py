"""manage.py evaluate_anomalies: a seeded history with planted anomalies, precision and recall
per detector and overall, and nothing left behind."""

from __future__ import annotations

import re

from django.core.management import call_command

from anomalies.models import Anomaly
from ledger.models import LedgerTransaction
from tests.anomalies.conftest import DB
from treasury.rls import system_context

pytestmark = DB

LINE = re.compile(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+) precision=([\d.]+) recall=([\d.]+)$", re.M)


def test_evaluate_anomalies_prints_precision_and_recall(capsys):
    with system_context():
        before = LedgerTransaction.objects.count()

    call_command("evaluate_anomalies", seed=5, hosts=7, buyers=10, days=8)

    captured = capsys.readouterr()
    scores = {m[0]: (float(m[4]), float(m[5])) for m in LINE.findall(captured.out)}
    assert {"duplicate_charge", "isolation_forest", "ledger_difference", "overall"} <= set(scores)
    for precision, recall in scores.values():
        assert 0 <= precision <= 1 and 0 <= recall <= 1
    assert scores["duplicate_charge"][1] == 1.0
    # The bar on the fixed seed: most planted anomalies found, few false alarms.
    overall_precision, overall_recall = scores["overall"]
    assert overall_recall >= 0.8
    assert overall_precision >= 0.5
    assert "history" in captured.err and "detectors" in captured.err  # the progress bar
    with system_context():
        assert LedgerTransaction.objects.count() == before
        assert not Anomaly.objects.exists()
