"""What the kubernetes deployer (releases) and the kubernetes runner (pipelines) share: a client
configuration of its own for each call, and a valid label value. Pure helpers, no app imports."""

from __future__ import annotations

import re
from collections.abc import Mapping

from kubernetes import client
from kubernetes.config import ConfigException, load_incluster_config, load_kube_config


class KubeConfigError(Exception):
    """The client could not be configured; ``where`` names the source that was tried."""

    def __init__(self, where: str, cause: BaseException):
        super().__init__(f"{where}: {cause}")
        self.where, self.cause = where, cause


def client_configuration(settings: Mapping, token: str) -> client.Configuration:
    """A Configuration of its own — never the client's global default, which another cluster
    may be using in the same worker. From ``api_url`` (+ ``verify_ssl``, ``ca_cert`` and the
    bearer ``token``), else the ``kubeconfig`` file (+ ``context``), else the in-cluster service
    account. Raises :class:`KubeConfigError`."""
    configuration = client.Configuration()
    api_url = str(settings.get("api_url") or "").strip().rstrip("/")
    if api_url:
        configuration.host = api_url
        configuration.verify_ssl = settings.get("verify_ssl", True) is not False
        if settings.get("ca_cert"):
            configuration.ssl_ca_cert = str(settings["ca_cert"])
        if token:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return configuration
    kubeconfig = settings.get("kubeconfig")
    try:
        if kubeconfig:
            load_kube_config(
                config_file=str(kubeconfig),
                context=settings.get("context") or None,
                client_configuration=configuration,
                persist_config=False,
            )
        else:
            load_incluster_config(client_configuration=configuration)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = f"the kubeconfig {kubeconfig}" if kubeconfig else "the in-cluster service account"
        raise KubeConfigError(where, exc) from None
    return configuration


def label_value(value: object) -> str:
    """A valid label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(value))[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", text)
