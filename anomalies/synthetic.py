"""A synthetic marketplace history for tests and `evaluate_anomalies`: charges, refunds and
payouts posted through the ledger's own service, with anomalies of each kind planted where
the caller says. Everything is keyed by a run tag, so runs never collide; the evaluation
runs it inside a transaction it rolls back.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.services import EntryLine, credit, debit, post_transaction
from treasury.models import Role, User
from treasury.rls import system_context

PLATFORM_FEE_BPS = 1000


class SyntheticBooks:
    """Posts a marketplace's money movements as treasury.stripe and payouts book them."""

    def __init__(self, *, tag: str | None = None, currency: str = "USD") -> None:
        self.tag = tag or uuid.uuid4().hex[:12]
        self.currency = currency
        self._count = 0
        self._lines: dict[int, list[EntryLine]] = {}
        self.users: list[User] = []
        self.payouts_of: dict[Any, list[int]] = {}

    def _next(self, kind: str) -> str:
        self._count += 1
        return f"{kind}:{self.tag}:{self._count}"

    def user(self, *, role: Role, created_at: datetime | None = None) -> User:
        with system_context():
            user = User.objects.create_user(
                f"{role}.{self.tag}.{len(self.users)}@synthetic.test", None, role=role
            )
            if created_at is not None:
                User.objects.filter(pk=user.pk).update(created_at=created_at)
                user.created_at = created_at
        self.users.append(user)
        return user

    def charge(
        self, *, buyer: User | None, host: User, amount_cents: int, at: datetime
    ) -> LedgerTransaction:
        """DESIGN "Charge succeeded": the platform keeps 10% and bears Stripe's fee."""
        currency = self.currency
        platform_fee = amount_cents * PLATFORM_FEE_BPS // 10_000
        stripe_fee = 30 + amount_cents * 29 // 1000
        lines = [
            debit(platform_code("stripe_balance", currency), amount_cents, currency),
            credit(user_code(host.pk, "payable", currency), amount_cents - platform_fee, currency),
            credit(platform_code("fee_revenue", currency), platform_fee, currency),
            debit(platform_code("processing_fees", currency), stripe_fee, currency),
            credit(platform_code("stripe_balance", currency), stripe_fee, currency),
        ]
        key = self._next("charge")
        posted = post_transaction(
            idempotency_key=key,
            entries=lines,
            event_source="stripe_charge",
            reference_id=f"ch_{key.replace(':', '_')}",
            effective_at=at,
            metadata={"host_id": str(host.pk), "buyer_id": str(buyer.pk) if buyer else None},
        )
        self._lines[posted.pk] = lines
        return posted

    def refund(self, *, charge: LedgerTransaction, at: datetime) -> LedgerTransaction:
        """A full refund: the charge's split mirrored (reverses the charge)."""
        mirrored = [
            EntryLine(line.account, "credit" if line.side == "debit" else "debit",
                      line.amount_cents, line.currency)
            for line in self._lines[charge.pk]
        ]  # fmt: skip
        return post_transaction(
            idempotency_key=self._next("refund"),
            entries=mirrored,
            event_source="stripe_charge.reversal",
            reference_id=charge.reference_id,
            effective_at=at,
            metadata={"host_id": charge.metadata.get("host_id"), "reversed_fraction": "1"},
            reverses=charge,
        )

    def lost_dispute(
        self, *, charge: LedgerTransaction, amount_cents: int, opened: datetime, lost: datetime
    ) -> None:
        """A dispute as disputes/ books it, platform bearing the loss: Stripe withdraws the
        funds when it opens (`dispute:<dp>:opened`), the loss is booked when it is lost."""
        currency = self.currency
        dispute_id = f"dp_{self._next('dispute').replace(':', '_')}"
        steps = [
            ("opened", opened, "dispute_losses", "stripe_balance"),
            ("lost", lost, "fee_revenue", "dispute_losses"),
        ]
        for step, at, debited, credited in steps:
            post_transaction(
                idempotency_key=f"dispute:{dispute_id}:{step}",
                entries=[
                    debit(platform_code(debited, currency), amount_cents, currency),
                    credit(platform_code(credited, currency), amount_cents, currency),
                ],
                event_source="dispute",
                reference_id=dispute_id,
                effective_at=at,
                metadata={"host_id": charge.metadata.get("host_id"), "charge": charge.reference_id},
            )

    def payout(self, *, user: User, amount_cents: int, at: datetime) -> str:
        """A payout reservation as payouts books it (payable -> payout_clearing); returns
        the payout id the postings carry."""
        key = self._next("payout")
        payout_id = f"syn-{key.split(':', 1)[1].replace(':', '-')}"
        post_transaction(
            idempotency_key=key,
            entries=[
                debit(user_code(user.pk, "payable", self.currency), amount_cents, self.currency),
                credit(
                    platform_code("payout_clearing", self.currency), amount_cents, self.currency
                ),
            ],
            event_source="payout",
            reference_id=payout_id,
            effective_at=at,
            metadata={"payout_id": payout_id},
        )
        self.payouts_of.setdefault(user.pk, []).append(amount_cents)
        return payout_id

    def payable_cents(self, user: User) -> int:
        from ledger.selectors import account_balance

        with system_context():
            return account_balance(code=user_code(user.pk, "payable", self.currency))

    def split_rule_change(self, *, host: User) -> Any:
        """The host writes a new split rule now (splits' own service)."""
        from splits.services import create_split_rule

        with system_context():
            return create_split_rule(
                owner=host,
                name=f"synthetic {self.tag}",
                recipients=[{"recipient_id": host.pk, "share_bps": 10_000}],
                platform_fee_bps=PLATFORM_FEE_BPS,
                stripe_fee_bearer="platform",
                dispute_loss_bearer="platform",
            )

    def failing_webhook(self, *, attempts: int) -> str:
        """A Stripe event whose processing kept failing (as treasury.stripe records it)."""
        from treasury.stripe.models import EventStatus, StripeEventProcessing

        event_id = f"evt_{self.tag}_{self._next('event').rsplit(':', 1)[1]}"
        with system_context():
            StripeEventProcessing.objects.create(
                stripe_event_id=event_id,
                event_type="charge.succeeded",
                stripe_object_id=f"ch_{event_id}",
                status=EventStatus.FAILED,
                attempts=attempts,
                last_error="RuntimeError: synthetic failure",
            )
        return event_id

    def tamper_balance(self, *, user: User, cents: int) -> str:
        """Break the books behind the posting function's back: what verify_ledger exists to
        catch. Only where the owner turned drills on (anomalies/migrations/0004)."""
        from django.db import connection

        code = user_code(user.pk, "payable", self.currency)
        with system_context(), connection.cursor() as cursor:
            cursor.execute("SELECT ledger_drill_shift_balance(%s, 0, %s)", [code, cents])
        return code
