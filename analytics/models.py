"""Daily aggregates of the books (the seed's Coliseum), and the ops status the dashboard shows.

`analytics_daily` is derived data: one row per (day, currency) with user null for the whole
platform, and one per (day, currency, user) for each host (their sales) or recipient (their
payouts). A day is always recomputed whole from the ledger (services.recompute_day), so a
row is right whatever happened before, and recomputing is idempotent.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class DailyAggregate(models.Model):
    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    currency = models.CharField(max_length=3)
    # Null: the platform's totals. Else a host (sales of their charges) or a recipient
    # (payouts to them).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    # Charges booked (minus reversed charge postings), in minor units.
    gross_volume_cents = models.BigIntegerField(default=0)
    # Net fee revenue booked (charges' platform fees, less fees given back by refunds,
    # plus instant payout fees on the platform's row).
    platform_fee_cents = models.BigIntegerField(default=0)
    # Money that left Stripe to buyers: refunds (net of failed ones) ...
    refunds_cents = models.BigIntegerField(default=0)
    # ... and disputes (withdrawn amounts and fees, net of what won disputes returned).
    disputes_cents = models.BigIntegerField(default=0)
    # Payouts reserved from recipients' payables, net of released (failed) ones.
    payouts_cents = models.BigIntegerField(default=0)
    charge_count = models.PositiveIntegerField(default=0)
    computed_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_daily"
        ordering = ["-day", "currency"]
        verbose_name = "daily aggregate"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "currency", "user"],
                name="analytics_daily_once",
                nulls_distinct=False,
            ),
            models.CheckConstraint(
                condition=models.Q(currency__regex=r"^[A-Z]{3}$"),
                name="analytics_daily_currency_iso",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "day"]),
            models.Index(fields=["currency", "day"]),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.currency} {self.user_id or 'platform'}"


class PendingDay(models.Model):
    """A (day, currency) whose postings changed since it was last computed."""

    id = models.BigAutoField(primary_key=True)
    day = models.DateField()
    currency = models.CharField(max_length=3)
    marked_at = models.DateTimeField()

    class Meta:
        db_table = "analytics_pending_days"
        constraints = [
            models.UniqueConstraint(fields=["day", "currency"], name="analytics_pending_once")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.currency}"
