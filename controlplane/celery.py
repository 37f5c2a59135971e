"""The Celery app. Workers run jobs; the DB row is the truth, a message only says "look at id N"."""

import os
from enum import StrEnum

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_init

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


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task=None, **_kwargs) -> None:
    """Around each task, what Django does around each request: drop a connection that is
    broken or older than CONN_MAX_AGE, keep the others (see CELERY_DB_REUSE_MAX). Not for a
    task run eagerly in the caller's thread: that connection is the caller's."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


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
