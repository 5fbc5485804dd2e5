"""How well the detectors find what they are meant to: a seeded synthetic history with
anomalies of each kind planted, every detector run over its last day, and precision and
recall per detector against the planted labels.

Only findings about the synthetic history count (the database may hold other data); the
whole run happens in a transaction the command rolls back.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from anomalies import forest
from anomalies.detectors import DETECTORS
from anomalies.findings import Finding
from anomalies.synthetic import SyntheticBooks
from treasury.models import Role, User
from treasury.rls import system_context

Progress = Callable[[str, int, int], None]


@dataclass
class Labels:
    """Planted anomalies: detector -> the subjects (`type:id`) it should flag."""

    planted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    universe: set[str] = field(default_factory=set)  # ids of everything synthetic

    def plant(self, detector: str, subject_type: str, subject_id: object) -> None:
        self.planted[detector].add(f"{subject_type}:{subject_id}")


@dataclass(frozen=True)
class Score:
    detector: str
    planted: int
    flagged: int
    hits: int

    @property
    def precision(self) -> float:
        return self.hits / self.flagged if self.flagged else (1.0 if not self.planted else 0.0)

    @property
    def recall(self) -> float:
        return self.hits / self.planted if self.planted else 1.0


@dataclass
class History:
    books: SyntheticBooks
    labels: Labels
    since: datetime  # the window the detectors judge: the last day
    until: datetime
    history_start: datetime


def build_history(
    *,
    seed: int,
    hosts: int = 12,
    buyers: int = 40,
    days: int = 30,
    progress: Progress | None = None,
) -> History:
    """Normal trade for `days`, then the last day with one or more cases of each anomaly."""
    rng = random.Random(seed)
    books = SyntheticBooks(tag=f"eval{seed}x{rng.getrandbits(32):08x}")
    labels = Labels()
    # The judged day is today (the split-rule case happens now, when the rule is written),
    # from midnight: so hours of day, and the forest's features, do not depend on the clock.
    end = (timezone.now() + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=days)
    since = end - timedelta(hours=24)
    host_users = [
        books.user(role=Role.HOST, created_at=start - timedelta(days=rng.randint(30, 400)))
        for _ in range(hosts)
    ]
    buyer_users = [books.user(role=Role.BUYER) for _ in range(buyers)]
    typical = {h.pk: rng.randint(1500, 9000) for h in host_users}
    # The host of the split-rule case sells big tickets: its large payout is ordinary for it.
    split_host = host_users[2]
    typical[split_host.pk] = 60_000
    charges_of: dict[object, list] = defaultdict(list)

    def normal_amount(host: User) -> int:
        return max(500, int(rng.lognormvariate(0, 0.25) * typical[host.pk]))

    def business_hours(day: datetime) -> datetime:
        return day + timedelta(hours=rng.randint(10, 22), minutes=rng.randint(0, 59))

    # -- ordinary trade: charges, a few refunds, weekly payouts of most of the balance
    for day_index in range(days):
        day = start + timedelta(days=day_index)
        for host in host_users:
            for _ in range(rng.randint(1, 3)):
                at = business_hours(day)
                if at >= since:
                    continue  # the judged day is built below
                charge = books.charge(
                    buyer=rng.choice(buyer_users),
                    host=host,
                    amount_cents=normal_amount(host),
                    at=at,
                )
                charges_of[host.pk].append(charge)
                if rng.random() < 0.03:
                    books.refund(charge=charge, at=at + timedelta(hours=rng.randint(1, 20)))
            if day_index % 7 == 6:
                balance = books.payable_cents(host)
                if balance > 1000:
                    books.payout(
                        user=host, amount_cents=balance * 8 // 10, at=day + timedelta(hours=23)
                    )
        if progress:
            progress("history", day_index + 1, days)
    # -- the judged day: ordinary trade
    for host in host_users:
        for _ in range(rng.randint(1, 3)):
            books.charge(
                buyer=rng.choice(buyer_users),
                host=host,
                amount_cents=normal_amount(host),
                at=since + timedelta(minutes=rng.randint(10, 1200)),
            )
    cases = iter(host_users)
    # duplicate charges: the same buyer, host and amount twice within minutes
    for _ in range(3):
        host, buyer = rng.choice(host_users), rng.choice(buyer_users)
        at = since + timedelta(minutes=rng.randint(30, 900))
        amount = normal_amount(host)
        books.charge(buyer=buyer, host=host, amount_cents=amount, at=at)
        twin = books.charge(
            buyer=buyer,
            host=host,
            amount_cents=amount,
            at=at + timedelta(minutes=rng.randint(1, 5)),
        )
        labels.plant("duplicate_charge", "transaction", twin.pk)
    # refund ratio spike: most of a host's sales today refunded
    host = next(cases)
    for index in range(5):
        at = since + timedelta(minutes=60 + index * 90)
        charge = books.charge(
            buyer=rng.choice(buyer_users), host=host, amount_cents=normal_amount(host), at=at
        )
        if index < 4:
            books.refund(charge=charge, at=at + timedelta(minutes=30))
    labels.plant("refund_ratio_spike", "user", host.pk)
    # payout velocity: a day's payouts six times the recipient's usual payout, paid from a
    # burst of sales just before the judged day
    host = next(cases)
    for day in (1, 2, 3):  # a history of payouts, however short the run
        books.payout(
            user=host, amount_cents=1000, at=start + timedelta(days=day, hours=23, minutes=30)
        )
    burst_cents = 6 * max(books.payouts_of[host.pk])
    books.charge(
        buyer=rng.choice(buyer_users),
        host=host,
        amount_cents=burst_cents * 10 // 9 + 1,
        at=since - timedelta(minutes=30),
    )
    payout_id = books.payout(user=host, amount_cents=burst_cents, at=since + timedelta(hours=5))
    labels.plant("payout_velocity", "payout", payout_id)
    # a split rule written just before a large payout (ordinary in size for this host)
    host = next(cases)
    assert host is split_host
    books.split_rule_change(host=host)
    payout_id = books.payout(
        user=host, amount_cents=120_000, at=timezone.now() + timedelta(minutes=1)
    )
    labels.plant("split_change_before_payout", "payout", payout_id)
    # a balance going negative: everything paid out, then refunds
    host = next(cases)
    recent = charges_of[host.pk][-2:]
    books.payout(
        user=host, amount_cents=max(books.payable_cents(host), 1), at=since + timedelta(hours=1)
    )
    for charge in recent:
        books.refund(charge=charge, at=since + timedelta(hours=3))
    labels.plant("negative_balance_growing", "user", host.pk)
    # webhooks that failed again and again (and one that failed once: not an anomaly yet)
    for _ in range(2):
        event_id = books.failing_webhook(attempts=6)
        labels.plant("webhook_failures", "stripe_event", event_id)
        labels.universe.add(event_id)
    labels.universe.add(books.failing_webhook(attempts=1))
    # books that disagree with themselves
    tampered_host = next(cases)
    code = books.tamper_balance(user=tampered_host, cents=7)
    labels.plant("ledger_difference", "ledger", f"balance:{code}#0")
    # outliers for the forest: huge charges at 3-4 am from one buyer
    host, buyer = next(cases), rng.choice(buyer_users)
    small_hours = since.replace(hour=3, minute=0, second=0)
    if small_hours < since:
        small_hours += timedelta(days=1)
    for index in range(3):
        outlier = books.charge(
            buyer=buyer,
            host=host,
            amount_cents=typical[host.pk] * rng.randint(40, 80),
            at=small_hours + timedelta(minutes=10 * index),
        )
        labels.plant("isolation_forest", "transaction", outlier.pk)
    labels.universe |= {str(u.pk) for u in books.users}
    return History(
        books=books, labels=labels, since=since, until=end + timedelta(hours=1), history_start=start
    )


def _is_synthetic(finding: Finding, history: History) -> bool:
    """Whether a finding is about the synthetic history (by its subject or whom it is about)."""
    universe = history.labels.universe
    if finding.subject_id in universe or str(finding.user_id) in universe:
        return True
    return finding.subject_type == "ledger" and any(u in finding.subject_id for u in universe)


def run_evaluation(*, history: History, seed: int, progress: Progress | None = None) -> list[Score]:
    """Run every detector over the judged day; the forest is trained (in memory, not stored)
    on the history before it."""
    findings: dict[str, list[Finding]] = {}
    names = [name for name in DETECTORS if name != "isolation_forest"]
    total = len(names) + 1
    with system_context():
        for index, name in enumerate(names):
            findings[name] = DETECTORS[name](since=history.since, until=history.until)
            if progress:
                progress("detectors", index + 1, total)
        universe = history.labels.universe
        training = [
            sample
            for sample in forest.charge_samples(since=history.history_start, until=history.since)
            if str(sample.user_id) in universe
        ]
        model = forest.TrainedForest(
            kind="charge",
            model=forest.fit_forest(training, seed=seed),
            metadata={"model_path": "(in memory)", "samples": len(training)},
        )
        judged = [
            sample
            for sample in forest.charge_samples(since=history.since, until=history.until)
            if str(sample.user_id) in universe
        ]
        findings["isolation_forest"] = forest.findings_for(model, judged)
        if progress:
            progress("detectors", total, total)
    scores = []
    for name, found in findings.items():
        ours = {f"{f.subject_type}:{f.subject_id}" for f in found if _is_synthetic(f, history)}
        planted = history.labels.planted.get(name, set())
        scores.append(Score(name, len(planted), len(ours), len(ours & planted)))
    return scores


def overall(scores: list[Score]) -> Score:
    return Score(
        "overall",
        sum(s.planted for s in scores),
        sum(s.flagged for s in scores),
        sum(s.hits for s in scores),
    )


@contextmanager
def ledger_drills(using: str = "owner") -> Iterator[None]:
    """Turn ledger drills on for a block (committed by the owner, so the runtime role's
    transaction sees it), and off again afterwards whatever happens."""
    from django.db import connections

    with connections[using].cursor() as cursor:
        cursor.execute(
            "INSERT INTO treasury_private.ledger_drills DEFAULT VALUES ON CONFLICT DO NOTHING"
            " RETURNING singleton"
        )
        turned_on = cursor.fetchone() is not None
    try:
        yield
    finally:
        if turned_on:
            with connections[using].cursor() as cursor:
                cursor.execute("DELETE FROM treasury_private.ledger_drills")
