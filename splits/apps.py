from django.apps import AppConfig


class SplitsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "splits"
