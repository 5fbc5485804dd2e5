"""System checks for the Stripe integration.

dj-stripe 2.11 warns on every command that DJSTRIPE_WEBHOOK_EVENT_CALLBACK is deprecated in
favour of its signals. The treasury uses the callback on purpose (services.py explains why:
the signals fire around dj-stripe's own event processing, not instead of it), and the
warning has no id, so SILENCED_SYSTEM_CHECKS cannot silence it. This swaps dj-stripe's
check for one that keeps its real test: the callback must accept `api_key`.
"""

from __future__ import annotations

from inspect import signature
from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.checks.registry import registry


def webhook_callback_accepts_api_key(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from djstripe.settings import djstripe_settings

    callback = djstripe_settings.WEBHOOK_EVENT_CALLBACK
    if callback and len(signature(callback).parameters) < 2:
        return [
            Error(
                f"{callback} accepts fewer than 2 arguments.",
                hint="The callback is called as callback(trigger, api_key=...).",
                id="djstripe.E004",
            )
        ]
    return []


def replace_djstripe_callback_check() -> None:
    from djstripe import checks as djstripe_checks

    registry.registered_checks.discard(djstripe_checks.check_webhook_event_callback_accepts_api_key)
    register("djstripe")(webhook_callback_accepts_api_key)
