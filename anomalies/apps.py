from django.apps import AppConfig


class AnomaliesConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "anomalies"
