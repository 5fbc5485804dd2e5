"""No table of its own: the override console writes through the other apps' services and
`audit_logs`. This unmanaged model only carries the staff permissions (one per override
action, plus `all_hosts`) that the groups in `overrides.permissions` are given."""

from __future__ import annotations

from django.db import models


class StaffPermission(models.Model):
    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("adjust_ledger", "May post manual ledger adjustments"),
            ("hold_payout", "May hold pending payouts"),
            ("release_payout", "May release held payouts"),
            ("archive_split_rule", "May archive split rules"),
            ("add_dispute_note", "May add dispute notes"),
            ("create_refund", "May refund charges"),
            ("resolve_anomaly", "May resolve anomalies"),
            ("retry_webhook", "May retry Stripe webhook events"),
            ("all_hosts", "Sees every host's objects (else only hosts assigned by guardian)"),
        ]

    def __str__(self) -> str:
        return "staff permissions"
