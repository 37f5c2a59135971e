"""CD loop figures, on a real Docker engine and a real worker.

1. Image build: a cold build of the example model's bundle (no cache) next to the rebuild after
   a code-only change (one line of model/serve.py). Target: rebuild ≤ 20 % of the cold build —
   the Dockerfile installs the dependencies in their own layer, before the code.
2. Approve → production healthy: an approver approves a pending promotion (the same service the
   button calls); the clock stops when the deployment has succeeded, which the docker deployer
   only reports once the new container answers its health check on the production port (checked
   again here). Two releases alternate, so every approval replaces a running container.

    .venv/bin/python bench/cd_loop.py [--rounds 7] [--embedded]

Needs the engine and the base image of scripts/docker_up.sh.
"""

import io
import json
import os
import statistics
import subprocess
import tarfile
import time
import urllib.request

from _stack import ROOT, cleanup, parse_args, setup, stack_name, start_worker, stop

BASE_IMAGE = os.environ.get("CONTROLPLANE_BASE_IMAGE", "local/python:3.11-bookworm")
EXAMPLE = ROOT / "examples" / "churn-model"


def bundle(change: str = "") -> bytes:
    """The example's tracked files as a gzipped tar (what a build job bundles)."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "."], cwd=EXAMPLE, capture_output=True, check=True
    ).stdout.decode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in sorted(n for n in names.split("\0") if n):
            data = (EXAMPLE / name).read_bytes()
            if name == "model/serve.py" and change:
                data += f"\n# {change}\n".encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(tag: str, context: bytes, *, nocache: bool) -> tuple[str, float]:
    from apps.pipelines.builder import build_from_context

    started = time.perf_counter()
    image_id = build_from_context(
        context=io.BytesIO(context),
        tag=tag,
        labels={"controlplane.project": "bench"},
        write=lambda _chunk: None,
        nocache=nocache,
    )
    return image_id, time.perf_counter() - started


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200 and json.loads(r.read())["status"] == "ok"
    except OSError:
        return False


def main() -> None:
    args = parse_args(__doc__, rounds={"type": int, "default": 7})
    os.environ["CONTROLPLANE_BUILD_BASE_IMAGE"] = BASE_IMAGE
    var = setup(args, "cd")
    from docker.client import from_env

    client = from_env()
    client.images.get(BASE_IMAGE)  # fails clearly without scripts/docker_up.sh

    # 1. Cold build vs code-only rebuild.
    _v1, cold = build("controlplane-bench/churn:v1", bundle(), nocache=True)
    _v2, rebuild = build("controlplane-bench/churn:v2", bundle("code-only change"), nocache=False)
    print(f"image build: cold {cold:.1f}s, code-only rebuild {rebuild:.1f}s", flush=True)

    # 2. Approve → production healthy.
    from django.contrib.auth import get_user_model

    from apps.accounts.choices import Role
    from apps.projects.services import membership_set, project_create
    from apps.releases.choices import DeploymentStatus
    from apps.releases.models import Deployment
    from apps.releases.services import promotion_approve, promotion_request, release_create

    users = get_user_model().objects
    admin = users.create_superuser("bench-admin", "admin@example.com", "x")
    lead = users.create_user("bench-lead", "lead@example.com", "x")
    project = project_create(name="Bench CD", actor=admin)
    membership_set(project=project, user=lead, role=Role.APPROVER, actor=admin)
    production = project.environments.get(name="production")
    production.deployer = "docker"
    production.service_port = 18931
    production.health_check_timeout = 60
    production.save()
    releases = []
    for version, tag in (
        ("v1", "controlplane-bench/churn:v1"),
        ("v2", "controlplane-bench/churn:v2"),
    ):
        image = client.images.get(tag)
        releases.append(
            release_create(
                project=project,
                version=version,
                commit_sha=version * 4,
                actor=admin,
                image_ref=tag,
                image_digest=image.id,
            )
        )
    worker = start_worker(concurrency=2)
    timings = []
    try:
        for i in range(args.rounds + 1):  # round 0 warms up: nothing serves before it
            release = releases[i % 2]
            promotion = promotion_request(release=release, environment=production, actor="bench")
            started = time.perf_counter()
            promotion_approve(promotion=promotion, user=lead)
            while True:
                deployment = Deployment.objects.filter(promotion=promotion).first()
                if deployment and deployment.status not in ("pending", "running"):
                    break
                time.sleep(0.02)
            elapsed = time.perf_counter() - started
            assert deployment.status == DeploymentStatus.SUCCEEDED, deployment.log
            assert healthy(production.service_port), "production does not answer"
            details = deployment.details
            if i:
                timings.append(elapsed)
            print(
                f"round {i}: {release.version} healthy in production {elapsed:.2f}s "
                f"(candidate healthy {details.get('candidate_healthy_seconds', '?')}s, "
                f"switch gap {details.get('switch_gap_seconds', '?')}s)",
                flush=True,
            )
    finally:
        stop(worker)
        for container in client.containers.list(
            all=True, filters={"label": f"controlplane.project={project.slug}"}
        ):
            container.remove(force=True)
        for tag in ("controlplane-bench/churn:v1", "controlplane-bench/churn:v2"):
            client.images.remove(tag, force=True)
        cleanup(var)
    print(f"\nstack: {stack_name(args)}, rounds: {len(timings)}")
    print(
        f"approve → production container healthy: median {statistics.median(timings):.2f}s, "
        f"max {max(timings):.2f}s"
    )
    print(
        f"image rebuild after a code-only change: {rebuild:.1f}s vs cold build {cold:.1f}s "
        f"= {rebuild / cold:.1%} (target ≤ 20%)"
    )


if __name__ == "__main__":
    main()
