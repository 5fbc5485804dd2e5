from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _after_migrate(sender: AppConfig, using: str, **kwargs: Any) -> None:
    from overrides.permissions import ensure_staff_groups

    # After auth's create_permissions (connected first) has made this app's permissions.
    ensure_staff_groups(using=using)


class OverridesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "overrides"
    verbose_name = "Overrides"

    def ready(self) -> None:
        post_migrate.connect(_after_migrate, sender=self, dispatch_uid="overrides_staff_groups")
