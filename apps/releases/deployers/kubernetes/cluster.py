"""The Kubernetes API as the deployer uses it: a client configured for one call (never the
client's global default), the few calls it makes in the wire format (plain dicts), and API and
network errors turned into sentences a user can act on."""

from __future__ import annotations

from collections.abc import Mapping

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from apps.core.kube import (
    RAW,
    KubeConfigError,
    missing_is_none,
    response_json,
    status_message,
)
from apps.core.kube import client_configuration as kube_configuration
from apps.core.transient import is_transient as _core_is_transient

from ..base import DeployError
from .settings import TOKEN_VARIABLE

USER_AGENT = "controlplane-deployer"
#: What a call may raise besides ApiException: no answer (refused, reset, timed out, TLS).
NETWORK_ERRORS = (urllib3.exceptions.HTTPError, OSError)
API_ERRORS = (ApiException, *NETWORK_ERRORS)


def client_configuration(target: Mapping, token: str) -> client.Configuration:
    """A Configuration of its own for this call (``core.kube.client_configuration``), with a
    failure explained in the deployer's terms."""
    try:
        return kube_configuration(target, token)
    except KubeConfigError as exc:
        raise DeployError(
            f"Cannot configure the Kubernetes client from {exc.where} ({exc.cause}). Set target "
            f"api_url and the secret variable {TOKEN_VARIABLE}, or target kubeconfig."
        ) from None


class Cluster:
    """The few calls the deployer makes, in the wire format (plain dicts): reads come back
    unparsed (``_preload_content=False``) so a spec put back after a failed rollout is exactly
    what the server had."""

    def __init__(self, target: Mapping, token: str, namespace: str):
        self.configuration = client_configuration(target, token)
        self.host = self.configuration.host
        self.token = token
        self.namespace = namespace
        self.api_client = client.ApiClient(self.configuration)
        self.api_client.user_agent = USER_AGENT
        self.apps = client.AppsV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.api_client.close()

    def explained(self, doing: str) -> Explained:
        return Explained(self, doing)

    def read_deployment(self, name: str) -> dict | None:
        return missing_is_none(
            lambda: self.apps.read_namespaced_deployment(name, self.namespace, **RAW)
        )

    def create_deployment(self, body: dict) -> dict:
        model = client.V1Deployment.from_dict(body)
        return response_json(self.apps.create_namespaced_deployment(self.namespace, model, **RAW))

    def replace_deployment(self, name: str, body: dict) -> dict:
        model = client.V1Deployment.from_dict(body)
        return response_json(
            self.apps.replace_namespaced_deployment(name, self.namespace, model, **RAW)
        )

    def delete_deployment(self, name: str) -> None:
        missing_is_none(
            lambda: self.apps.delete_namespaced_deployment(
                name, self.namespace, propagation_policy="Background", **RAW
            )
        )

    def read_service(self, name: str) -> dict | None:
        return missing_is_none(
            lambda: self.core.read_namespaced_service(name, self.namespace, **RAW)
        )

    def create_service(self, body: dict) -> dict:
        model = client.V1Service.from_dict(body)
        return response_json(self.core.create_namespaced_service(self.namespace, model, **RAW))

    def patch_service(self, name: str, patch: dict) -> dict:
        # A JSON merge patch replaces the ports list whole (a strategic merge would keep an
        # old port next to the new one).
        return response_json(
            self.core.patch_namespaced_service(
                name,
                self.namespace,
                patch,
                _content_type="application/merge-patch+json",
                **RAW,
            )
        )

    def delete_service(self, name: str) -> None:
        missing_is_none(lambda: self.core.delete_namespaced_service(name, self.namespace, **RAW))

    def list_pods(self, selector: str) -> list[dict]:
        response = self.core.list_namespaced_pod(
            self.namespace, label_selector=selector, limit=20, **RAW
        )
        return response_json(response).get("items") or []

    def explain(self, exc: BaseException, doing: str) -> DeployError:
        """An API or network error as a sentence a user can act on, without the token."""
        where = f"the Kubernetes API at {self.host}"
        where_ = where[0].upper() + where[1:]
        tls_hint = (
            "Set target ca_cert to the cluster's CA certificate file (verify_ssl: false turns "
            "the check off, for a test cluster only)."
        )
        if isinstance(exc, ApiException):
            said = status_message(exc)
            if exc.status == 401:
                message = (
                    f"{where_} refused the credentials (401 Unauthorized) while {doing}: set a "
                    f"valid service-account token in the environment's secret variable "
                    f"{TOKEN_VARIABLE}."
                )
            elif exc.status == 403:
                message = (
                    f"{where_} forbids it (403) while {doing}: {said}. The token's service "
                    f"account needs get, create, update, patch and delete on deployments and "
                    f"services in namespace {self.namespace} (see docs/kubernetes.md)."
                )
            elif exc.status == 404:
                message = (
                    f"{where_} answered 404 while {doing}: {said}. Does namespace "
                    f"{self.namespace} exist, and is api_url the API server's address?"
                )
            elif exc.status == 0:  # the client's way of saying TLS failed
                message = f"TLS with {where} failed while {doing}: {exc.reason}. {tls_hint}"
            else:
                message = f"{where_} answered {exc.status} {exc.reason} while {doing}: {said}"
        elif isinstance(getattr(exc, "reason", exc), urllib3.exceptions.SSLError):
            message = f"TLS with {where} failed while {doing}: {_network_reason(exc)}. {tls_hint}"
        else:
            message = f"Cannot reach {where} while {doing}: {_network_reason(exc)}"
        return DeployError(self.scrub(message))

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


class Explained:
    """``with cluster.explained("doing X"):`` turns API and network errors into DeployError."""

    def __init__(self, cluster: Cluster, doing: str):
        self.cluster, self.doing = cluster, doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is not None and isinstance(exc, API_ERRORS):
            raise self.cluster.explain(exc, self.doing) from None
        return False


def _network_reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    marker = "Failed to establish a new connection: "
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip() or exc.__class__.__name__


def is_transient(exc: BaseException) -> bool:
    """``core.transient.is_transient`` (5xx, 408, 425, 429, no answer), plus what the client
    says in its own way: ``ApiException(status=0)`` is a TLS failure before any answer, and
    every urllib3 error is the connection's, not the server's verdict."""
    if isinstance(exc, ApiException) and exc.status == 0:
        return True
    return _core_is_transient(exc) or isinstance(exc, NETWORK_ERRORS)
