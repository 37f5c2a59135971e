from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "apps.training"
    label = "training"
    verbose_name = "Training"

    def ready(self) -> None:
        from . import dataset_receivers, receivers

        receivers.connect()
        dataset_receivers.connect()
