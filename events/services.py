"""Writing events (the outbox) and delivering them to their handlers.

`record_event` is called by the service that changes money, inside its own transaction, so
an event exists exactly when the change was committed (a rollback takes both). Delivery runs
later from django-q2 (`events.tasks.deliver_events`): first each new event gets one delivery
row per registered handler (fan-out), then each due delivery runs in its own transaction
with the handler's own writes, so a handler that succeeded is marked so in the same commit
as its effect. A failure is rolled back to a savepoint, counted, and retried with
exponential backoff; after EVENTS_MAX_ATTEMPTS the delivery is `dead` until an admin
retries it. A job (a handler registered with atomic=False: a Stripe call, a mail) is leased,
run outside any transaction, and its outcome recorded after: see events.registry.
`deliver_after_commit` tries an event's deliveries once right after the commit that wrote
it. Replays (`replay_events`) call handlers again whatever their status, which is why
handlers are idempotent.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from events import registry
from events.models import DeliveryStatus, Event, EventDelivery
from treasury.errors import InvalidInput, NotFound
from treasury.rls import system_context
from treasury.services import record_audit

if TYPE_CHECKING:
    from ledger.models import LedgerAccount
    from ledger.services import EntryLine
    from treasury.models import User

logger = logging.getLogger(__name__)

LEDGER_TRANSACTION_POSTED = "ledger.transaction_posted"
# How long a worker may run a job (a handler registered with atomic=False) before another
# worker may take its delivery again: far longer than a few Stripe calls take.
JOB_LEASE = timedelta(minutes=5)


# --- writing ---


def record_event(*, type: str, subject: str, payload: dict[str, Any]) -> int:
    """Append one event in the caller's transaction; returns its id.

    The caller is a service already running under the system (or admin) context, as every
    money-changing service does: the insert is one statement, so posting stays cheap.
    """
    with connection.cursor() as cursor:
        # clock_timestamp(), not now(): the moment of the change, which `replay_events
        # --since` selects on (now() is the start of a possibly long transaction).
        cursor.execute(
            "INSERT INTO events (type, subject, payload, created_at)"
            " VALUES (%s, %s, %s, clock_timestamp()) RETURNING id",
            [type, subject, json.dumps(payload, cls=DjangoJSONEncoder)],
        )
        return int(cursor.fetchone()[0])


def record_ledger_event(
    *,
    transaction_id: int,
    idempotency_key: str,
    event_source: str,
    reference_id: str | None,
    effective_at: datetime,
    metadata: dict[str, Any],
    legs: Sequence[tuple[LedgerAccount, EntryLine]],
) -> int:
    """`ledger.transaction_posted`: what was posted, with the amounts per account owner and
    currency (owner null: the platform), so handlers need not read the ledger back."""
    amounts: dict[tuple[str | None, str], dict[str, int]] = {}
    entries = []
    for account, line in legs:
        owner_id = str(account.owner_id) if account.owner_id else None
        side = str(line.side)
        entries.append(
            {
                "account": account.code,
                "owner_id": owner_id,
                "side": side,
                "amount_cents": line.amount_cents,
                "currency": line.currency,
            }
        )
        totals = amounts.setdefault(
            (owner_id, line.currency), {"debit_cents": 0, "credit_cents": 0}
        )
        totals[f"{side}_cents"] += line.amount_cents
    return record_event(
        type=LEDGER_TRANSACTION_POSTED,
        subject=f"ledger_transaction:{transaction_id}",
        payload={
            "transaction_id": transaction_id,
            "idempotency_key": idempotency_key,
            "event_source": event_source,
            "reference_id": reference_id,
            "effective_at": effective_at,
            "metadata": metadata,
            "entries": entries,
            "amounts": [
                {"owner_id": owner_id, "currency": currency, **totals}
                for (owner_id, currency), totals in amounts.items()
            ],
        },
    )


# --- delivering ---


@dataclass
class DeliverySummary:
    dispatched: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "dispatched": self.dispatched,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "errors": self.errors[:20],
        }


def backoff(attempts: int) -> timedelta:
    """Wait before retry `attempts` + 1: base * 2^(attempts - 1), capped."""
    seconds = settings.EVENTS_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    return timedelta(seconds=min(seconds, settings.EVENTS_RETRY_MAX_SECONDS))


def dispatch_events(*, batch_size: int = 500, event_id: int | None = None) -> int:
    """Give every new event (or only `event_id`) one delivery row per handler registered
    for its type."""
    dispatched = 0
    while True:
        with transaction.atomic(), system_context():
            # SKIP LOCKED: two clusters fan out different events instead of waiting.
            rows = Event.objects.select_for_update(skip_locked=True).filter(
                dispatched_at__isnull=True
            )
            if event_id is not None:
                rows = rows.filter(pk=event_id)
            batch = list(rows.order_by("id").only("id", "type")[:batch_size])
            if not batch:
                return dispatched
            now = timezone.now()
            EventDelivery.objects.bulk_create(
                [
                    EventDelivery(event_id=event.pk, handler=handler.name, next_attempt_at=now)
                    for event in batch
                    for handler in registry.handlers_for(event.type)
                ],
                ignore_conflicts=True,
            )
            Event.objects.filter(pk__in=[e.pk for e in batch]).update(dispatched_at=now)
            dispatched += len(batch)


def _record_failure(delivery: EventDelivery, error: str) -> None:
    delivery.last_error = error[-4000:]
    if delivery.attempts >= settings.EVENTS_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.DEAD
    else:
        delivery.status = DeliveryStatus.FAILED
    delivery.next_attempt_at = timezone.now() + backoff(delivery.attempts)
    delivery.save()
    logger.warning(
        "event #%s: handler %s failed (attempt %s)",
        delivery.event_id,
        delivery.handler,
        delivery.attempts,
    )


def _record_success(delivery: EventDelivery) -> None:
    delivery.status = DeliveryStatus.SUCCEEDED
    delivery.delivered_at = timezone.now()
    delivery.last_error = ""
    delivery.save()


def _run(delivery: EventDelivery) -> bool:
    """Call the delivery's handler (in a savepoint) and record the outcome on the row; the
    caller holds the row's lock in its transaction, so success commits with the effect."""
    handler = registry.handler_named(delivery.handler)
    delivery.attempts += 1
    try:
        if handler is None:
            raise LookupError(f"no event handler named {delivery.handler!r} is registered")
        with transaction.atomic():
            handler.func(delivery.event)
    except Exception:
        _record_failure(delivery, traceback.format_exc(limit=8))
        return False
    _record_success(delivery)
    return True


@dataclass(frozen=True)
class _ClaimedJob:
    delivery_id: int
    event: Event
    handler: registry.Handler


def _claim(delivery: EventDelivery, handler: registry.Handler) -> _ClaimedJob:
    """Lease a job's delivery (in the caller's transaction, which holds its row lock): no
    other worker takes it before JOB_LEASE has passed, and a worker that dies mid-job
    leaves it to be retried then."""
    delivery.attempts += 1
    delivery.next_attempt_at = timezone.now() + JOB_LEASE
    delivery.save(update_fields=["attempts", "next_attempt_at", "updated_at"])
    return _ClaimedJob(delivery_id=delivery.pk, event=delivery.event, handler=handler)


def _run_job(job: _ClaimedJob) -> bool:
    """Run a claimed job outside any transaction of ours, then record how it ended."""
    try:
        job.handler.func(job.event)
    except Exception:
        succeeded, error = False, traceback.format_exc(limit=8)
    else:
        succeeded, error = True, ""
    with transaction.atomic(), system_context():
        delivery = EventDelivery.objects.select_for_update().get(pk=job.delivery_id)
        if delivery.status == DeliveryStatus.SUCCEEDED:
            return True  # a run whose lease ran out, or a replay, finished it meanwhile
        if succeeded:
            _record_success(delivery)
        else:
            _record_failure(delivery, error)
    return succeeded


def _start(delivery: EventDelivery) -> bool | _ClaimedJob:
    """In the caller's transaction: run a transactional handler to its end, or claim a job
    for the caller to run once that transaction has committed."""
    handler = registry.handler_named(delivery.handler)
    if handler is not None and not handler.atomic:
        return _claim(delivery, handler)
    return _run(delivery)


def deliver_due(
    *,
    limit: int = 1000,
    summary: DeliverySummary | None = None,
    event_id: int | None = None,
) -> DeliverySummary:
    """Run up to `limit` due deliveries (of every event, or of `event_id`), each in its own
    transaction, oldest event first."""
    summary = summary or DeliverySummary()
    for _ in range(limit):
        with transaction.atomic(), system_context():
            rows = EventDelivery.objects.select_for_update(skip_locked=True, of=("self",)).filter(
                status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED],
                next_attempt_at__lte=timezone.now(),
            )
            if event_id is not None:
                rows = rows.filter(event_id=event_id)
            delivery = rows.select_related("event").order_by("next_attempt_at", "id").first()
            if delivery is None:
                break
            outcome = _start(delivery)
        if isinstance(outcome, _ClaimedJob):
            outcome = _run_job(outcome)
        if outcome:
            summary.succeeded += 1
        else:
            summary.failed += 1
            summary.errors.append(f"event #{delivery.event_id} -> {delivery.handler}")
    return summary


def deliver_events(*, limit: int = 1000) -> DeliverySummary:
    """The job: fan out new events, then run what is due."""
    summary = DeliverySummary(dispatched=dispatch_events())
    return deliver_due(limit=limit, summary=summary)


def deliver_event(*, event_id: int) -> DeliverySummary:
    """Fan out one event and run its due deliveries now."""
    summary = DeliverySummary(dispatched=dispatch_events(event_id=event_id))
    return deliver_due(event_id=event_id, summary=summary)


def deliver_after_commit(*, event_id: int) -> None:
    """Once the caller's transaction commits, try the event's deliveries in this process.

    Only a nudge, so that what a request asked for (a payout, a refund) is on its way before
    the answer: the event and its deliveries are durable rows, and the `deliver_events` job
    runs whatever this does not finish (a crash, an error, a busy row). That is why it may be
    an in-process on_commit callback: losing it loses nothing. It never raises: a failing
    side effect must not turn committed work into an error, nor stop the callbacks after it
    (and a plain function, not a functools.partial, which Django 5.2 cannot name when it
    logs a failing robust callback, Django ticket 36487).
    """

    def deliver_now() -> None:
        try:
            deliver_event(event_id=event_id)
        except Exception:
            logger.exception(
                "event #%s: delivering it right after commit failed; deliver_events retries it",
                event_id,
            )

    transaction.on_commit(deliver_now)


@transaction.atomic
def retry_deliveries(*, actor: User | None, delivery_ids: Iterable[int]) -> int:
    """An admin's "retry now": failed or dead deliveries become due again; audited."""
    with system_context():
        rows = list(
            EventDelivery.objects.select_for_update()
            .filter(pk__in=list(delivery_ids))
            .exclude(status=DeliveryStatus.SUCCEEDED)
        )
        now = timezone.now()
        for delivery in rows:
            before = {"status": delivery.status, "attempts": delivery.attempts}
            delivery.status = DeliveryStatus.PENDING
            delivery.next_attempt_at = now
            delivery.save(update_fields=["status", "next_attempt_at", "updated_at"])
            record_audit(
                actor=actor,
                action="events.delivery.retry",
                target=delivery,
                before=before,
                after={"status": delivery.status, "attempts": delivery.attempts},
            )
    return len(rows)


# --- replaying ---


@dataclass
class ReplaySummary:
    events: int = 0
    succeeded: int = 0
    failed: int = 0


def replay_events(
    *,
    since: datetime,
    handler: str | None = None,
    chunk_size: int = 500,
    progress: Callable[[int, int], None] | None = None,
) -> ReplaySummary:
    """Call the handlers again for every event recorded at or after `since`, in order.

    Each (event, handler) runs in its own transaction and updates its delivery row (created
    if the handler was registered after the event was dispatched). Handlers are idempotent,
    so replaying what already succeeded changes nothing they own.
    """
    if timezone.is_naive(since):
        raise InvalidInput("since needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    if handler is not None and registry.handler_named(handler) is None:
        known = ", ".join(registry.handler_names()) or "none"
        raise NotFound(f"no event handler named {handler!r} (registered: {known})")
    with system_context():
        total = Event.objects.filter(created_at__gte=since).count()
    summary = ReplaySummary()
    last_id = 0
    while True:
        with system_context():
            chunk = list(
                Event.objects.filter(created_at__gte=since, pk__gt=last_id).order_by("id")[
                    :chunk_size
                ]
            )
        if not chunk:
            break
        for event in chunk:
            for target in registry.handlers_for(event.type):
                if handler is not None and target.name != handler:
                    continue
                with transaction.atomic(), system_context():
                    delivery, _ = EventDelivery.objects.select_for_update().get_or_create(
                        event=event,
                        handler=target.name,
                        defaults={"next_attempt_at": timezone.now()},
                    )
                    delivery.event = event
                    outcome = _start(delivery)
                if isinstance(outcome, _ClaimedJob):
                    outcome = _run_job(outcome)
                if outcome:
                    summary.succeeded += 1
                else:
                    summary.failed += 1
            summary.events += 1
            last_id = event.pk
        if progress is not None:
            progress(summary.events, total)
    return summary
