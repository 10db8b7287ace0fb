from django.apps import AppConfig


class MlConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "ml"
    verbose_name = "Model and predictions"

    def ready(self) -> None:
        # Registers the tasks, so that what is sent by name (ml.services.queue) runs here when
        # tasks are eager. Their model code loads inside the task bodies only (in workers).
        from ml import (
            receivers,  # noqa: F401 - connects the case_queued receiver
            tasks,  # noqa: F401
        )
