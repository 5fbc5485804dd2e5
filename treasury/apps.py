from typing import Any

from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig
from django.db.models.signals import post_migrate, pre_migrate


def _before_migrate(sender: AppConfig, using: str, **kwargs: Any) -> None:
    from treasury.db_roles import ensure_runtime_role

    if sender.name == "treasury":
        ensure_runtime_role(using=using)


def _after_migrate(sender: AppConfig, using: str, **kwargs: Any) -> None:
    from treasury.db_roles import grant_runtime_privileges
    from treasury.rls import install_context_key

    # post_migrate fires per app after *all* migrations ran: one grant covers every table.
    if sender.name == "treasury":
        grant_runtime_privileges(using=using)
        install_context_key(using=using)


class TreasuryConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "treasury"
    verbose_name = "Treasury"

    def ready(self) -> None:
        from treasury import checks  # noqa: F401  (registers the system checks)
        from treasury.stripe.checks import replace_djstripe_callback_check
        from treasury.stripe.client import configure_stripe_library

        configure_stripe_library()  # dj-stripe reaches Stripe through the library's globals
        replace_djstripe_callback_check()

        pre_migrate.connect(_before_migrate, dispatch_uid="treasury_runtime_role")
        post_migrate.connect(_after_migrate, dispatch_uid="treasury_runtime_grants")


class TreasuryAdminConfig(AdminConfig):
    """The admin, with a site that audits every add, change and delete (treasury/admin_site.py)."""

    default_site = "treasury.admin_site.TreasuryAdminSite"
