from django.apps import AppConfig


class MlConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ml"
    verbose_name = "Model and predictions"

    def ready(self) -> None:
        from ml import receivers  # noqa: F401 - connects the case_queued receiver
