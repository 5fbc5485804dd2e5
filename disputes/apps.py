from django.apps import AppConfig


class DisputesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "disputes"
    verbose_name = "Refunds and disputes"

    def ready(self) -> None:
        from disputes import checks, handlers, jobs  # noqa: F401  (checks, jobs register)

        handlers.register()  # refund.*, charge.refunded, charge.dispute.*
