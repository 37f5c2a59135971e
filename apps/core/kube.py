"""What the kubernetes deployer (releases) and the kubernetes runner (pipelines) share: a client
configuration of its own for each call, a valid label value, and reading the API's raw answers
(bodies, a 404 as None, the message of an error). Pure helpers, no app imports."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
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


#: (connect, read) seconds for one API call.
REQUEST_TIMEOUT = (5, 30)
#: The options of a call whose answer is read unparsed (:func:`response_json`).
RAW = {"_preload_content": False, "_request_timeout": REQUEST_TIMEOUT}


def response_json(response: Any) -> dict:
    """The JSON body of a call made with :data:`RAW`."""
    data = response.data  # reads the whole body
    if hasattr(response, "release_conn"):
        response.release_conn()  # back to the pool: read unparsed, it is not released alone
    return json.loads(data or b"{}")


def missing_is_none(call: Callable[[], Any]) -> dict | None:
    """:func:`response_json` of ``call()``, or None when the object is not there (404)."""
    try:
        return response_json(call())
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def status_message(exc: ApiException) -> str:
    """The ``message`` of the Status object the API server sends with an error."""
    try:
        body = json.loads(exc.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return str(exc.reason or "no message")
