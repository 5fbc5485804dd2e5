from django.apps import AppConfig


class SplitsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "splits"
    verbose_name = "Splits"

    def ready(self) -> None:
        from splits import checks  # noqa: F401  (registers the system checks)
