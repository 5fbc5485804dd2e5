"""System checks: the refunds and disputes settings must name real choices."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from splits.terms import Bearer

BUYER_POLICIES = ("partial", "full", "none")


@register()
def check_refund_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    if settings.REFUNDS_BUYER_POLICY not in BUYER_POLICIES:
        errors.append(
            Error(
                f"REFUNDS_BUYER_POLICY must be one of {', '.join(BUYER_POLICIES)}",
                id="disputes.E001",
            )
        )
    if settings.REFUNDS_BUYER_WINDOW_DAYS < 0:
        errors.append(Error("REFUNDS_BUYER_WINDOW_DAYS must not be negative", id="disputes.E002"))
    if settings.DISPUTES_FEE_BEARER not in Bearer.values:
        errors.append(
            Error(
                f"DISPUTES_FEE_BEARER must be one of {', '.join(Bearer.values)}",
                id="disputes.E003",
            )
        )
    return errors
