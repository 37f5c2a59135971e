"""The Celery app. Workers run jobs; the DB row is the truth, a message only says "look at id N"."""

import os
from enum import StrEnum

from celery import Celery
from celery.signals import worker_init

from .broker import install as install_embedded_broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings.local")
install_embedded_broker()

app = Celery("controlplane")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class CeleryQueue(StrEnum):
    """One queue per job kind, so build or training workers can live on other machines."""

    DEFAULT = "default"
    TEST = "test"
    BUILD = "build"
    DEPLOY = "deploy"
    TRAIN = "train"
    MONITOR = "monitor"


@worker_init.connect
def _ensure_broker_folders(**_kwargs) -> None:
    ensure_broker_folders()


def ensure_broker_folders() -> None:
    """The filesystem transport needs its folders to exist before anyone sends or polls."""
    from django.conf import settings

    opts = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
        if key in opts:
            os.makedirs(opts[key], exist_ok=True)
