from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "apps.training"
    label = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from apps.pipelines.models import Job
        from apps.pipelines.signals import job_finished, job_script_succeeded

        from . import dataset_receivers
        from .receivers import train_job_finished, train_job_script_succeeded

        job_script_succeeded.connect(
            train_job_script_succeeded, sender=Job, dispatch_uid="training.train_outcome"
        )
        job_finished.connect(train_job_finished, sender=Job, dispatch_uid="training.register")
        dataset_receivers.connect()
