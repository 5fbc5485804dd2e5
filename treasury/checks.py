from __future__ import annotations

from django.core.checks import CheckMessage, Error, Warning, register
from django.db import OperationalError

from treasury.db_roles import runtime_role_problems


def check_runtime_role(*, using: str = "default") -> list[CheckMessage]:
    """The app's connection must not be able to bypass row-level security."""
    try:
        problems = runtime_role_problems(using=using)
    except OperationalError as exc:
        return [
            Warning(
                f"Could not inspect the database role of '{using}': {exc}".strip(),
                hint="Run `make demo` (or manage.py bootstrap_db) to create the database.",
                id="treasury.W001",
            )
        ]
    return [
        Error(
            f"The runtime database connection '{using}' can bypass row-level security: {problem}.",
            hint="Point DATABASE_URL at the treasury_app role (NOSUPERUSER, NOBYPASSRLS).",
            id="treasury.E001",
        )
        for problem in problems
    ]


@register("treasury")
def runtime_role_check(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    return check_runtime_role(using="default")
