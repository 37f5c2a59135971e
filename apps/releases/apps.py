from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "apps.releases"
    label = "releases"
    verbose_name = "Releases"

    def ready(self) -> None:
        from apps.pipelines.models import PipelineRun
        from apps.pipelines.signals import run_status_changed

        from .receivers import release_from_succeeded_run

        run_status_changed.connect(
            release_from_succeeded_run, sender=PipelineRun, dispatch_uid="releases.from_run"
        )
