from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "apps.pipelines"
    label = "pipelines"
    verbose_name = "Pipelines"

    def ready(self) -> None:
        from . import routing  # noqa: F401 (registers the JOB_RESOURCE_QUEUES check)
