"""The default split terms come from the environment: refuse to start with ones that could
not split a charge, rather than fail on the first charge."""

from __future__ import annotations

from django.core.checks import CheckMessage, Error, register

from treasury.errors import InvalidInput


@register("splits")
def default_terms_check(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    from splits.services import platform_default_terms
    from treasury.models import User

    try:
        platform_default_terms(owner=User())
    except InvalidInput as exc:
        return [
            Error(
                f"The default split terms (settings SPLITS_DEFAULT_*) are invalid: {exc.message}",
                hint="See the Settings table in README.md.",
                id="splits.E001",
            )
        ]
    return []
