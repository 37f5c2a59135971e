"""The kubernetes deployer's pure parts, alone: manifests built from a release and the
environment's settings, the bodies that change them, and how a rollout is judged. No API server,
no network, no database."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
from kubernetes.client import ApiClient, V1Deployment, V1Service

from apps.releases.deployers import DeployError, DeployRequest
from apps.releases.deployers.kubernetes import manifests
from apps.releases.deployers.kubernetes.rollout import DONE, FAILED, WAITING, rollout_state
from apps.releases.deployers.kubernetes.settings import (
    DNS_LABEL,
    REVISION_ANNOTATION,
    parse_settings,
    resource_name,
)

NAME = "churn-production"


def request(**changes) -> DeployRequest:
    values = {
        "project": "churn",
        "environment": "production",
        "deployment_id": 41,
        "release": "r1-aaaa1111",
        "commit_sha": "1a2b3c4d5e6f",
        "image_ref": "registry.local/churn:r1",
        "image_digest": "",
        "bundle_path": None,
        "bundle_digest": "",
        "port": 8123,
        "health_path": "/healthz",
        "health_timeout": 40,
        "command": "",
        "env": {"MODEL_NAME": "churn", "API_KEY": "k"},
        "target": {},
        **changes,
    }
    return DeployRequest(**values)


def container_of(deployment: dict) -> dict:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return container


def env_of(deployment: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container_of(deployment)["env"]}


def test_the_deployment_of_a_release():
    settings = parse_settings(
        {"replicas": 2, "memory": "512m", "cpus": 0.5, "command": "python -m model.serve"}
    )
    body = manifests.deployment(request(), settings)

    assert (body["apiVersion"], body["kind"]) == ("apps/v1", "Deployment")
    assert body["metadata"]["name"] == NAME
    assert body["metadata"]["namespace"] == "default"
    assert body["metadata"]["labels"]["controlplane.release"] == "r1-aaaa1111"
    assert body["metadata"]["annotations"] == {
        "controlplane.deployment-id": "41",
        "controlplane.commit": "1a2b3c4d5e6f",
    }
    spec = body["spec"]
    assert spec["replicas"] == 2
    assert spec["progressDeadlineSeconds"] == 40  # the release's health timeout
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    template = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert "controlplane.release" not in spec["selector"]["matchLabels"]  # a selector is fixed
    assert template["metadata"]["labels"]["controlplane.deployment"] == "41"
    assert template["spec"]["automountServiceAccountToken"] is False
    container = container_of(body)
    assert container["image"] == "registry.local/churn:r1"
    assert container["command"] == ["/bin/sh", "-c", "python -m model.serve"]
    assert container["resources"]["limits"] == {"memory": "512Mi", "cpu": "500m"}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": 8123}
    assert container["livenessProbe"]["initialDelaySeconds"] == 40
    # The variables sorted, with where to listen: every address of the pod, and the port.
    assert [e["name"] for e in container["env"]] == ["API_KEY", "HOST", "MODEL_NAME", "PORT"]
    assert env_of(body)["HOST"] == "0.0.0.0"  # noqa: S104
    assert env_of(body)["PORT"] == "8123"
    # What the client sends: the body is a valid V1Deployment, unchanged by the round trip.
    api = ApiClient()
    model = V1Deployment.from_dict(body)
    assert api.sanitize_for_serialization(model) == body


def test_the_same_release_with_variables_in_another_order_is_the_same_deployment():
    settings = parse_settings({})
    first = manifests.deployment(request(env={"A": "1", "B": "2"}), settings)
    second = manifests.deployment(request(env={"B": "2", "A": "1"}), settings)
    assert first == second
    # Another deployment of it (a redeploy) changes the pod template: a new rollout.
    third = manifests.deployment(request(env={"A": "1", "B": "2"}, deployment_id=42), settings)
    assert third["spec"]["template"] != first["spec"]["template"]


def test_where_the_pods_listen_follows_the_environment():
    settings = parse_settings({})
    from_variable = manifests.deployment(request(env={"HOST": "::"}), settings)
    assert env_of(from_variable)["HOST"] == "::"
    from_target = request(env={"HOST": "::"}, target={"host": "127.0.0.1"})
    assert env_of(manifests.deployment(from_target, settings))["HOST"] == "127.0.0.1"
    with pytest.raises(DeployError, match="not an address"):
        manifests.deployment(request(target={"host": "not an address"}), settings)


def test_the_service_selects_the_deployments_pods_and_outlives_releases():
    settings = parse_settings({"service_type": "NodePort", "namespace": "models"})
    service = manifests.service(request(), settings)
    deployment = manifests.deployment(request(), settings)
    assert service["metadata"] == {
        "name": NAME,
        "namespace": "models",
        "labels": {
            "app.kubernetes.io/name": NAME,
            "app.kubernetes.io/managed-by": "controlplane",
            "controlplane.project": "churn",
            "controlplane.environment": "production",
        },
    }
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8123, "targetPort": 8123}
    ]
    assert manifests.is_ours(service) and manifests.is_ours(deployment)
    assert not manifests.is_ours({"metadata": {"labels": {"app": "someone-else"}}})
    assert ApiClient().sanitize_for_serialization(V1Service.from_dict(service)) == service
    # Without a port the service gets the default one.
    assert manifests.service(request(port=None), settings)["spec"]["ports"][0]["port"] == 8080


def test_a_service_is_patched_only_when_it_serves_otherwise():
    settings = parse_settings({"service_type": "NodePort"})
    desired = manifests.service(request(), settings)
    existing = copy.deepcopy(desired)
    existing["spec"]["ports"][0]["nodePort"] = 31234
    existing["metadata"]["labels"]["added-by-someone"] = "x"
    assert manifests.service_patch(existing, desired) is None

    moved = manifests.service(request(port=9000), settings)
    patch = manifests.service_patch(existing, moved)
    assert patch is not None
    assert patch["spec"]["ports"][0]["port"] == 9000
    assert "nodePort" not in patch["spec"]["ports"][0]  # another port: the server picks one

    as_load_balancer = manifests.service(
        request(), parse_settings({"service_type": "LoadBalancer"})
    )
    patch = manifests.service_patch(existing, as_load_balancer)
    assert patch["spec"]["type"] == "LoadBalancer"
    assert patch["spec"]["ports"][0]["nodePort"] == 31234  # the same port keeps its node port


def served(deployment: dict, *, revision: str, version: str) -> dict:
    """``deployment`` as the API server has it: with its server-side fields."""
    body = copy.deepcopy(deployment)
    body["metadata"].update(
        resourceVersion=version,
        uid="u-1",
        generation=3,
        creationTimestamp="2024-01-01T00:00:00Z",
        managedFields=[{"manager": "kube-controller-manager"}],
    )
    body["metadata"]["annotations"][REVISION_ANNOTATION] = revision
    body["metadata"]["labels"]["team"] = "ml"  # someone else's label
    body["status"] = {"observedGeneration": 3, "replicas": 1}
    return body


def test_a_replacement_is_a_put_over_what_was_read():
    settings = parse_settings({})
    current = served(manifests.deployment(request(), settings), revision="4", version="100")
    desired = manifests.deployment(request(release="r2-bbbb2222", deployment_id=42), settings)
    body = manifests.replacement(current, desired)
    assert body["metadata"]["resourceVersion"] == "100"  # a conflict if it changed since
    assert body["metadata"]["labels"]["team"] == "ml"
    assert body["metadata"]["labels"]["controlplane.release"] == "r2-bbbb2222"
    assert body["metadata"]["annotations"][REVISION_ANNOTATION] == "4"
    assert body["spec"] == desired["spec"]
    assert "resourceVersion" not in desired["metadata"]  # the desired body is left as it was


def test_a_rollback_puts_the_previous_template_back_over_the_current_object():
    settings = parse_settings({})
    previous = served(manifests.deployment(request(), settings), revision="4", version="100")
    new = manifests.deployment(request(release="r2-bbbb2222", deployment_id=42), settings)
    current = served(new, revision="5", version="130")
    body = manifests.rollback(previous, current)
    assert body["spec"] == previous["spec"]
    assert manifests.release_of(body) == "r1-aaaa1111"
    assert body["metadata"]["resourceVersion"] == "130"
    assert body["metadata"]["annotations"][REVISION_ANNOTATION] == "5"  # the controller's
    assert "status" not in body

    again = manifests.recreation(previous)
    assert again["spec"] == previous["spec"]
    assert "status" not in again
    for field in ("resourceVersion", "uid", "generation", "creationTimestamp", "managedFields"):
        assert field not in again["metadata"]
    assert previous["metadata"]["resourceVersion"] == "100"  # not changed in place


def test_readers_of_what_the_server_has():
    settings = parse_settings({})
    deployment = served(manifests.deployment(request(), settings), revision="7", version="1")
    assert manifests.release_of(deployment) == "r1-aaaa1111"
    assert manifests.revision_of(deployment) == "7"
    assert manifests.image_of(deployment["spec"]["template"]) == "registry.local/churn:r1"
    assert manifests.generation(deployment) == 3
    assert manifests.release_of({}) == manifests.revision_of({}) == ""
    assert manifests.pod_selector(request()) == (
        f"app.kubernetes.io/name={NAME},controlplane.deployment=41"
    )


def rolling(**status) -> dict:
    return {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": status}


@pytest.mark.parametrize(
    ("status", "state", "says"),
    [
        ({"observedGeneration": 1}, WAITING, "spec update to be observed"),
        ({"observedGeneration": 2, "updatedReplicas": 1}, WAITING, "1 of 2 new replicas"),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3},
            WAITING,
            "1 old replicas are pending termination",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1},
            WAITING,
            "1 of 2 updated replicas are available",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2},
            DONE,
            "successfully rolled out",
        ),
        (
            {
                "observedGeneration": 2,
                "conditions": [{"reason": "ProgressDeadlineExceeded", "message": "too slow"}],
            },
            FAILED,
            "progress deadline exceeded: too slow",
        ),
        (
            {
                "observedGeneration": 2,
                "updatedReplicas": 0,
                "conditions": [
                    {"type": "ReplicaFailure", "status": "True", "message": "quota exceeded"}
                ],
            },
            WAITING,
            "(replica failure: quota exceeded)",
        ),
    ],
)
def test_a_rollout_is_judged_as_kubectl_rollout_status_does(status, state, says):
    got, message = rollout_state(rolling(**status))
    assert got == state
    assert says in message


def test_names_and_settings():
    for project, environment in (("Churn_Model", "Prod"), ("9lives", "x" * 80)):
        name = resource_name(project, environment)
        assert len(name) <= 63 and DNS_LABEL.fullmatch(name) and name[0].isalpha()
    assert resource_name("churn", "Prod") != resource_name("churn", "prod")
    deployment = manifests.deployment(request(project="Churn_Model"), parse_settings({}))
    assert deployment["metadata"]["labels"]["controlplane.project"] == "Churn_Model"
    for bad in (
        {"replicas": 0},
        {"namespace": "Not_A_Namespace"},
        {"service_type": "ExternalName"},
        {"memory": "512x"},
        {"command": 3},
    ):
        with pytest.raises(DeployError, match="target"):
            parse_settings(bad)


def test_the_builders_leave_the_request_alone():
    req = request()
    before = replace(req)
    manifests.deployment(req, parse_settings({}))
    manifests.service(req, parse_settings({}))
    assert req == before and req.env == {"MODEL_NAME": "churn", "API_KEY": "k"}
