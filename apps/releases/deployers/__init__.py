"""Deployers: how a release is put in service in an environment. See ``base``."""

from .base import Deployer, DeployError, DeployFailed, DeployRequest, DeployResult


def get_deployer(name: str) -> Deployer:
    if name == "docker":
        from .docker import DockerDeployer

        return DockerDeployer()
    if name == "process":
        from .process import ProcessDeployer

        return ProcessDeployer()
    if name == "kubernetes":
        from .kubernetes import KubernetesDeployer

        return KubernetesDeployer()
    raise DeployError(f"Unknown deployer '{name}'.")


__all__ = [
    "DeployError",
    "DeployFailed",
    "DeployRequest",
    "DeployResult",
    "Deployer",
    "get_deployer",
]
