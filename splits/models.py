from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from splits.terms import BPS_WHOLE, Bearer, RuleTerms


class SplitRule(models.Model):
    """The seed's `split_rules`: how a charge's money is split, one row per version.

    A rule is never edited: `update_split_rule` supersedes the current version and writes
    version + 1 in the same lineage, so a charge that was split by version 3 can always be
    unwound by version 3. PostgreSQL refuses edits to the terms of a row and any DELETE
    (see migrations/0002); archiving is how a rule is deleted.

    `rules` holds the recipients, `[{"recipient_id": "<uuid>", "share_bps": 7000}, ...]`:
    integer basis points summing to exactly 10000 (checked in Python for the message, and by
    a CHECK constraint as the guarantee). The platform fee is `platform_fee_bps` of the
    amount plus `platform_fee_fixed_cents`, the fixed part only for charges in
    `fixed_fee_currency` (amounts are never converted between currencies).
    """

    id = models.BigAutoField(primary_key=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="split_rules"
    )
    name = models.CharField(max_length=200)
    rules = models.JSONField(help_text="Recipients: [{recipient_id, share_bps}], bps sum 10000.")
    is_default = models.BooleanField(default=False)
    platform_fee_bps = models.IntegerField(help_text="Platform fee in basis points (0-10000).")
    platform_fee_fixed_cents = models.BigIntegerField(
        default=0, help_text="Fixed platform fee in minor units, added to the bps part."
    )
    # NULL is "no fixed fee" (the CHECK pairs it with a fixed fee of 0); "" would be a
    # second spelling of the same thing.
    fixed_fee_currency = models.CharField(  # noqa: DJ001
        max_length=3,
        null=True,
        blank=True,
        help_text="ISO 4217 code of the fixed fee; null when there is none. Charges in other"
        " currencies pay the bps part only.",
    )
    stripe_fee_bearer = models.CharField(
        max_length=16, choices=Bearer.choices, default=Bearer.PLATFORM
    )
    dispute_loss_bearer = models.CharField(
        max_length=16, choices=Bearer.choices, default=Bearer.PLATFORM
    )
    lineage_id = models.UUIDField(default=uuid.uuid4, help_text="Shared by every version.")
    version = models.PositiveIntegerField(default=1)
    superseded_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "split_rules"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(platform_fee_bps__gte=0, platform_fee_bps__lte=BPS_WHOLE),
                name="split_rules_fee_bps_range",
            ),
            models.CheckConstraint(
                condition=models.Q(platform_fee_fixed_cents__gte=0),
                name="split_rules_fixed_fee_not_negative",
            ),
            # A fixed fee has a currency and a currency has a fixed fee: no half-set pairs.
            models.CheckConstraint(
                condition=(
                    models.Q(platform_fee_fixed_cents=0, fixed_fee_currency__isnull=True)
                    | models.Q(
                        platform_fee_fixed_cents__gt=0, fixed_fee_currency__regex=r"^[A-Z]{3}$"
                    )
                ),
                name="split_rules_fixed_fee_currency",
            ),
            models.CheckConstraint(
                condition=models.Q(stripe_fee_bearer__in=Bearer.values),
                name="split_rules_stripe_fee_bearer_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(dispute_loss_bearer__in=Bearer.values),
                name="split_rules_dispute_loss_bearer_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(version__gte=1), name="split_rules_version_positive"
            ),
            models.UniqueConstraint(
                fields=["lineage_id", "version"], name="split_rules_lineage_version_unique"
            ),
            # Two concurrent updates of one rule cannot both leave a current version.
            models.UniqueConstraint(
                fields=["lineage_id"],
                condition=models.Q(superseded_at__isnull=True),
                name="split_rules_one_current_version",
            ),
            models.UniqueConstraint(
                fields=["owner"],
                condition=models.Q(
                    is_default=True, superseded_at__isnull=True, archived_at__isnull=True
                ),
                name="split_rules_one_default_per_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"

    @property
    def is_current(self) -> bool:
        return self.superseded_at is None

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def terms(self) -> RuleTerms:
        """This version's terms for the allocation engine (validated again: cheap, and a row
        written by hand in a shell gets the same scrutiny as one from the API)."""
        return RuleTerms.build(
            recipients=self.rules,
            platform_fee_bps=self.platform_fee_bps,
            platform_fee_fixed_cents=self.platform_fee_fixed_cents,
            fixed_fee_currency=self.fixed_fee_currency,
            stripe_fee_bearer=self.stripe_fee_bearer,
            dispute_loss_bearer=self.dispute_loss_bearer,
            split_rule_id=self.pk,
        )
