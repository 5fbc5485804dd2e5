"""The terms of a split rule as plain values: what the allocation engine reads.

A `SplitRule` row (a version) and the settings' fallback rule both become `RuleTerms`, so
charges, refunds and disputes allocate through one code path whether or not the owner ever
wrote a rule. Validation that needs no database lives here; the checks that need one (do the
recipients exist, are they hosts or artists) are in services.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db import models

from ledger.money import MAX_AMOUNT_MINOR, normalize_currency
from treasury.errors import InvalidInput

BPS_WHOLE = 10_000  # basis points in 100%
MAX_RECIPIENTS = 100  # keeps the JSONB small and the allocation loop trivially cheap
MAX_CENTS = MAX_AMOUNT_MINOR  # the one bound on any amount (ledger/money.py)


class Bearer(models.TextChoices):
    """Who absorbs a cost: the platform alone, or the rule's recipients pro rata."""

    PLATFORM = "platform", "Platform"
    RECIPIENTS = "recipients", "Recipients"


@dataclass(frozen=True, slots=True)
class RecipientTerm:
    recipient_id: UUID
    share_bps: int


@dataclass(frozen=True, slots=True)
class RuleTerms:
    """One rule's terms, validated. `split_rule_id` is the version they came from (None when
    they are the settings' fallback), so a charge can record exactly which terms split it.

    The fixed fee applies only to charges in `fixed_fee_currency`: there is no conversion
    between currencies, so a 30-cent USD fee means nothing for a JPY charge, which pays the
    basis-point part alone.
    """

    recipients: tuple[RecipientTerm, ...]
    platform_fee_bps: int
    platform_fee_fixed_cents: int = 0
    fixed_fee_currency: str | None = None
    stripe_fee_bearer: Bearer = Bearer.PLATFORM
    dispute_loss_bearer: Bearer = Bearer.PLATFORM
    split_rule_id: int | None = None

    @classmethod
    def build(
        cls,
        *,
        recipients: Iterable[Mapping[str, Any] | RecipientTerm],
        platform_fee_bps: int,
        platform_fee_fixed_cents: int = 0,
        fixed_fee_currency: str | None = None,
        stripe_fee_bearer: str = Bearer.PLATFORM,
        dispute_loss_bearer: str = Bearer.PLATFORM,
        split_rule_id: int | None = None,
    ) -> RuleTerms:
        """Validate and normalise; every problem found is reported at once (InvalidInput)."""
        errors: dict[str, list[str]] = {}
        parsed = _parse_recipients(recipients, errors)
        if not _is_int(platform_fee_bps) or not 0 <= platform_fee_bps <= BPS_WHOLE:
            errors["platform_fee_bps"] = [
                f"must be an integer from 0 to {BPS_WHOLE} basis points (100% = {BPS_WHOLE})"
            ]
        if not _is_int(platform_fee_fixed_cents) or not 0 <= platform_fee_fixed_cents <= MAX_CENTS:
            errors["platform_fee_fixed_cents"] = [
                f"must be an integer of minor units from 0 to {MAX_CENTS}"
            ]
        currency: str | None = None
        if fixed_fee_currency:
            try:
                currency = normalize_currency(str(fixed_fee_currency))
            except InvalidInput as exc:
                errors["fixed_fee_currency"] = [exc.message]
        if platform_fee_fixed_cents == 0:
            currency = None  # no fixed fee: the currency would mean nothing
        elif "platform_fee_fixed_cents" not in errors and currency is None:
            errors.setdefault("fixed_fee_currency", ["required when there is a fixed fee"])
        for field, value in (
            ("stripe_fee_bearer", stripe_fee_bearer),
            ("dispute_loss_bearer", dispute_loss_bearer),
        ):
            if value not in Bearer.values:
                errors[field] = [f"must be one of {', '.join(Bearer.values)}"]
        if errors:
            raise InvalidInput(_first_message(errors), fields=errors)
        return cls(
            recipients=parsed,
            platform_fee_bps=platform_fee_bps,
            platform_fee_fixed_cents=platform_fee_fixed_cents,
            fixed_fee_currency=currency,
            stripe_fee_bearer=Bearer(stripe_fee_bearer),
            dispute_loss_bearer=Bearer(dispute_loss_bearer),
            split_rule_id=split_rule_id,
        )

    def recipients_json(self) -> list[dict[str, Any]]:
        """The JSONB `rules` column: order kept, since ties in rounding go to earlier entries."""
        return [
            {"recipient_id": str(r.recipient_id), "share_bps": r.share_bps} for r in self.recipients
        ]


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass, and True is not a share


def _parse_recipients(
    raw: Iterable[Mapping[str, Any] | RecipientTerm], errors: dict[str, list[str]]
) -> tuple[RecipientTerm, ...]:
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Iterable):
        errors["recipients"] = ["must be a list of {recipient_id, share_bps}"]
        return ()
    items = list(raw)
    if not items:
        errors["recipients"] = ["at least one recipient is required"]
        return ()
    if len(items) > MAX_RECIPIENTS:
        errors["recipients"] = [f"at most {MAX_RECIPIENTS} recipients"]
        return ()
    parsed: list[RecipientTerm] = []
    seen: set[UUID] = set()
    for index, item in enumerate(items):
        if isinstance(item, RecipientTerm):
            item = {"recipient_id": item.recipient_id, "share_bps": item.share_bps}
        if not isinstance(item, Mapping):
            errors[f"recipients.{index}"] = ["must be an object {recipient_id, share_bps}"]
            continue
        recipient_id = _parse_uuid(item.get("recipient_id"))
        share_bps = item.get("share_bps")
        item_ok = True
        if recipient_id is None:
            errors[f"recipients.{index}.recipient_id"] = ["must be a user id (UUID)"]
            item_ok = False
        elif recipient_id in seen:
            errors[f"recipients.{index}.recipient_id"] = [
                f"recipient {recipient_id} appears more than once"
            ]
            item_ok = False
        else:
            seen.add(recipient_id)
        if not _is_int(share_bps) or not 1 <= share_bps <= BPS_WHOLE:
            errors[f"recipients.{index}.share_bps"] = [
                f"must be an integer from 1 to {BPS_WHOLE} basis points"
            ]
            item_ok = False
        if item_ok and recipient_id is not None:
            parsed.append(RecipientTerm(recipient_id=recipient_id, share_bps=share_bps))
    if len(parsed) == len(items):
        total_bps = sum(r.share_bps for r in parsed)
        if total_bps != BPS_WHOLE:
            errors["recipients"] = [
                f"shares must sum to exactly {BPS_WHOLE} basis points (100%);"
                f" they sum to {total_bps}"
            ]
    return tuple(parsed)


def _parse_uuid(value: object) -> UUID | None:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value)) if isinstance(value, str) else None
    except ValueError:
        return None


def _first_message(errors: dict[str, list[str]]) -> str:
    field, messages = next(iter(errors.items()))
    return f"{field}: {messages[0]}"
