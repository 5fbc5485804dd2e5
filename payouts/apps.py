from django.apps import AppConfig


class PayoutsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "payouts"

    def ready(self) -> None:
        from payouts import handlers, jobs  # noqa: F401  (jobs register on import)

        handlers.register()  # payout.paid, payout.failed, transfer.reversed
