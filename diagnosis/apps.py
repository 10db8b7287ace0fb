from django.apps import AppConfig


class DiagnosisConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "diagnosis"
    verbose_name = "Clinical records"

    def ready(self) -> None:
        from diagnosis import (
            signals,  # noqa: F401 - connects the audit receivers
            tasks,  # noqa: F401 - registers them for sending by name
        )
