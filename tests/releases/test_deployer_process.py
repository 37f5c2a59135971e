"""The process deployer with real bundles, virtualenvs and processes (no Docker, no database)."""

import contextlib
import gzip
import hashlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from apps.releases.deployers import DeployError, DeployFailed, DeployRequest, get_deployer
from apps.releases.deployers.health import free_port
from apps.releases.deployers.process import ProcessDeployer, supervise

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "churn"
ENV = "production"

# The service: answers /healthz with its release name, unless FAIL_HEALTH is set; exits at once
# with a message when CRASH is set. Reports the value of a dependency when one is installed.
SERVER = """\
import http.server, json, os, sys
RELEASE = {release!r}
try:
    import cp_tiny_dep
    DEP = cp_tiny_dep.VALUE
except ImportError:
    DEP = ""
if os.environ.get("CRASH"):
    print("boom: the model file is missing", flush=True)
    sys.exit(3)
print(f"{{RELEASE}} listening on {{os.environ['PORT']}}", flush=True)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == "/healthz" and not os.environ.get("FAIL_HEALTH")
        body = json.dumps({{"release": RELEASE, "pid": os.getpid(), "pgid": os.getpgid(0),
                           "dep": DEP, "secret": os.environ.get("API_KEY", "")}}).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


def make_bundle(where: Path, release: str, files: dict[str, bytes] | None = None) -> Path:
    """A tar.gz like the build job's: server.py plus ``files``."""
    members = {"server.py": SERVER.format(release=release).encode(), **(files or {})}
    path = where / f"{release}.tar.gz"
    with gzip.GzipFile(path, "wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_wheel() -> bytes:
    """A pure-Python wheel with no dependencies: pip installs it without any index."""
    files = {
        "cp_tiny_dep/__init__.py": "VALUE = 'from-the-venv'\n",
        "cp_tiny_dep-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: cp-tiny-dep\n"
        "Version: 1.0\n",
        "cp_tiny_dep-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "cp_tiny_dep-1.0.dist-info/RECORD"
    files[record] = "".join(f"{name},,\n" for name in [*files, record])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return buf.getvalue()


def get(port: int, path: str = "/healthz") -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:  # noqa: S310
        return json.loads(resp.read())


def group_gone(pgid: int, timeout: float = 5) -> bool:
    """Whether no process of the group runs any more (zombies do not count)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pgid, os.WNOHANG)
        members = []
        for stat_file in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                fields = stat_file.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    members.append(stat_file)
        if not members:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def deploy_dir(settings, tmp_path: Path) -> Path:
    settings.CONTROLPLANE_DEPLOY_DIR = tmp_path / "deploy"
    return settings.CONTROLPLANE_DEPLOY_DIR


@pytest.fixture
def deployer(deploy_dir):
    deployer = ProcessDeployer()
    yield deployer
    deployer.stop(project=PROJECT, environment=ENV)


@pytest.fixture
def make_request(tmp_path: Path):
    counter = iter(range(1, 1000))
    lines: list[str] = []

    def make(
        bundle: Path, port: int, *, env=None, target=None, timeout=15, command="python server.py"
    ) -> DeployRequest:
        return DeployRequest(
            project=PROJECT,
            environment=ENV,
            deployment_id=next(counter),
            release=bundle.name.removesuffix(".tar.gz"),
            commit_sha="1a2b3c4d" * 5,
            image_ref="",
            image_digest="",
            bundle_path=bundle,
            bundle_digest=digest(bundle),
            port=port,
            health_path="/healthz",
            health_timeout=timeout,
            command=command,
            env=env or {},
            target=target or {},
            log=lines.append,
        )

    make.lines = lines
    return make


def test_get_deployer_knows_process():
    assert isinstance(get_deployer("process"), ProcessDeployer)


def test_deploy_switch_and_rollbacks(deployer, deploy_dir, make_request, tmp_path):
    port = free_port()
    v1 = deployer.deploy(make_request(make_bundle(tmp_path, "v1"), port, env={"API_KEY": "s3cr3t"}))
    assert v1.url == f"http://127.0.0.1:{port}"
    answer = get(port)
    assert answer["release"] == "v1"
    assert answer["secret"] == "s3cr3t"
    assert v1.details["candidate_healthy_seconds"] < 15
    assert v1.details["switch_gap_seconds"] < 15
    here = deploy_dir / PROJECT / ENV
    state = json.loads((here / "state.json").read_text())
    assert state["pid"] == answer["pgid"] == v1.details["pid"]
    assert state["env_keys"] == ["API_KEY"]
    assert "s3cr3t" not in (here / "state.json").read_text()
    assert stat.S_IMODE((here / state["env_file"]).stat().st_mode) == 0o600
    assert (deploy_dir / "releases" / digest(tmp_path / "v1.tar.gz")[7:23] / "server.py").is_file()
    assert deployer.status(project=PROJECT, environment=ENV)["release"] == "v1"

    v2 = deployer.deploy(make_request(make_bundle(tmp_path, "v2"), port))
    assert get(port)["release"] == "v2"
    assert group_gone(v1.details["pid"]), "v1 still runs"
    assert not (here / state["env_file"]).exists(), "v1's variables were left behind"

    # A release that never becomes healthy is stopped on its side port; v2 is never touched.
    started = time.monotonic()
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(
            make_request(make_bundle(tmp_path, "v3"), port, env={"FAIL_HEALTH": "1"}, timeout=3)
        )
    assert time.monotonic() - started < 10
    assert failed.value.rolled_back is True
    assert "HTTP 503" in str(failed.value)
    answer = get(port)
    assert (answer["release"], answer["pgid"]) == ("v2", v2.details["pid"])
    assert deployer.status(project=PROJECT, environment=ENV)["release"] == "v2"

    # Without the side-port check the old release is stopped first, and started again.
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(
            make_request(
                make_bundle(tmp_path, "v4"),
                port,
                env={"FAIL_HEALTH": "1"},
                target={"verify_first": False},
                timeout=3,
            )
        )
    assert failed.value.rolled_back is True
    assert "serves again" in str(failed.value)
    answer = get(port)
    assert answer["release"] == "v2"
    assert answer["pgid"] != v2.details["pid"]
    status = deployer.status(project=PROJECT, environment=ENV)
    assert status["running"] is True
    assert (status["release"], status["pid"]) == ("v2", answer["pgid"])


def test_a_crash_at_start_fails_fast_with_its_output(deployer, make_request, tmp_path):
    bundle = make_bundle(tmp_path, "v1")
    started = time.monotonic()
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(make_request(bundle, free_port(), env={"CRASH": "1"}, timeout=60))
    assert time.monotonic() - started < 10
    message = str(failed.value)
    assert "exited with code 3" in message
    assert "boom: the model file is missing" in message
    assert failed.value.rolled_back is False  # nothing served before
    assert deployer.status(project=PROJECT, environment=ENV) == {"running": False, "release": ""}


def test_supervise_restarts_a_killed_service(deployer, deploy_dir, make_request, tmp_path):
    port = free_port()
    result = deployer.deploy(make_request(make_bundle(tmp_path, "v1"), port))
    assert supervise() == []  # alive: nothing to do
    server = get(port)["pid"]
    os.kill(server, signal.SIGKILL)
    assert group_gone(result.details["pid"])

    restarted = deployer.supervise()
    assert [(r["environment"], r["release"], r["restarts"]) for r in restarted] == [(ENV, "v1", 1)]
    deadline = time.monotonic() + 10
    while True:
        try:
            answer = get(port)
            break
        except OSError:
            assert time.monotonic() < deadline, "the restarted service never answered"
            time.sleep(0.2)
    assert answer["release"] == "v1"
    assert answer["pgid"] == restarted[0]["pid"] != result.details["pid"]
    assert deployer.status(project=PROJECT, environment=ENV)["restarts"] == 1
    assert "[supervisor] restarted" in Path(result.details["log"]).read_text()


def test_the_service_outlives_the_process_that_deployed_it(deploy_dir, make_request, tmp_path):
    port = free_port()
    bundle = make_bundle(tmp_path, "v1")
    request = {"bundle": str(bundle), "digest": digest(bundle), "port": port}
    code = f"""
import json, django
django.setup()
from pathlib import Path
from apps.releases.deployers import DeployRequest, get_deployer
r = json.loads({json.dumps(json.dumps(request))})
result = get_deployer("process").deploy(DeployRequest(
    project={PROJECT!r}, environment={ENV!r}, deployment_id=1, release="v1", commit_sha="c",
    image_ref="", image_digest="", bundle_path=Path(r["bundle"]), bundle_digest=r["digest"],
    port=r["port"], health_path="/healthz", health_timeout=15, command="python server.py"))
print(result.details["pid"])
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.test",
        "CONTROLPLANE_DEPLOY_DIR": str(deploy_dir),
    }
    try:
        # The service must not keep the deployer's output pipes open, or this would hang.
        done = subprocess.run(  # noqa: S603
            [sys.executable, "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        pid = int(done.stdout.split()[-1])
        answer = get(port)
        assert (answer["release"], answer["pgid"]) == ("v1", pid)
        assert ProcessDeployer().status(project=PROJECT, environment=ENV)["running"] is True
    finally:
        ProcessDeployer().stop(project=PROJECT, environment=ENV)
    with pytest.raises(OSError):
        get(port)
    assert ProcessDeployer().status(project=PROJECT, environment=ENV)["running"] is False


def test_requirements_get_a_virtualenv_built_once(deployer, deploy_dir, make_request, tmp_path):
    files = {
        "cp_tiny_dep-1.0-py3-none-any.whl": tiny_wheel(),
        "requirements.txt": b"./cp_tiny_dep-1.0-py3-none-any.whl\n",
    }
    port = free_port()
    first = deployer.deploy(make_request(make_bundle(tmp_path, "v1", files), port, timeout=30))
    assert get(port)["dep"] == "from-the-venv"
    assert "venv_build_seconds" in first.details
    assert any("cp-tiny-dep" in line for line in make_request.lines), "pip output not logged"
    second = deployer.deploy(make_request(make_bundle(tmp_path, "v2", files), port))
    answer = get(port)
    assert (answer["release"], answer["dep"]) == ("v2", "from-the-venv")
    assert "venv_build_seconds" not in second.details
    assert second.details["venv"] == first.details["venv"]
    assert first.details["venv"].startswith(str(deploy_dir / "venvs"))


def test_a_bundle_escaping_its_folder_is_refused(deployer, deploy_dir, make_request, tmp_path):
    bundle = make_bundle(tmp_path, "evil", {"../evil": b"owned\n"})
    with pytest.raises(DeployError, match=r"unsafe member '\.\./evil'"):
        deployer.deploy(make_request(bundle, free_port()))
    assert not (deploy_dir / "evil").exists()
    assert not (deploy_dir / "releases" / "evil").exists()
    assert list((deploy_dir / "releases").iterdir()) == []


def test_clear_errors_before_anything_starts(deployer, make_request, tmp_path):
    bundle = make_bundle(tmp_path, "v1")
    with pytest.raises(DeployError, match="no service port"):
        deployer.deploy(make_request(bundle, None))
    with pytest.raises(DeployError, match="no serve command"):
        deployer.deploy(make_request(bundle, free_port(), command=""))


def test_prune_keeps_what_serves_and_a_few_spare_releases(tmp_path):
    import os

    from apps.releases.deployers.process import prune

    root = tmp_path / "deploy"
    for kind in ("releases", "venvs"):
        for i in range(8):
            folder = root / kind / f"{kind[0]}{i}"
            folder.mkdir(parents=True)
            os.utime(folder, (1_000_000 + i, 1_000_000 + i))  # old: r0 oldest … r7 newest
    fresh = root / "releases" / "building-now"
    fresh.mkdir()  # touched just now: a deploy may be extracting it
    serving = root / "churn" / "prod"
    serving.mkdir(parents=True)
    (serving / "state.json").write_text(
        json.dumps({"cwd": str(root / "releases" / "r0"), "venv": str(root / "venvs" / "v1")})
    )
    removed = prune(root, keep=3)
    left = sorted(p.name for p in (root / "releases").iterdir())
    # What serves (r0) stays however old; of the others the 3 most recent (the fresh one
    # among them) stay.
    assert left == ["building-now", "r0", "r6", "r7"]
    assert sorted(removed["releases"]) == ["r1", "r2", "r3", "r4", "r5"]
    assert sorted(p.name for p in (root / "venvs").iterdir() if p.is_dir()) == [
        "v1",
        "v5",
        "v6",
        "v7",
    ]
    # Keeping none: only what serves and what is being built right now survive.
    prune(root, keep=0)
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["building-now", "r0"]
    assert [p.name for p in (root / "venvs").iterdir() if p.is_dir()] == ["v1"]


# Listens where HOST says, as the example's model.serve does; reports HOST and its address.
HOST_SERVER = """\
import http.server, json, os
HOST = os.environ.get("HOST", "")

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"host": HOST, "bound": self.server.server_address[0]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer((HOST, int(os.environ["PORT"])), Handler).serve_forever()
"""


def answers(host: str, port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=5) as resp:  # noqa: S310
            return json.loads(resp.read())
    except OSError:
        return None


def test_services_listen_on_loopback_unless_the_environment_says_otherwise(
    deployer, make_request, tmp_path
):
    files = {"server.py": HOST_SERVER.encode()}
    port = free_port()
    result = deployer.deploy(make_request(make_bundle(tmp_path, "v1", files), port))
    assert answers("127.0.0.1", port) == {"host": "127.0.0.1", "bound": "127.0.0.1"}
    assert answers("127.0.0.2", port) is None  # loopback 127.0.0.1 only, not every address
    assert result.url == f"http://127.0.0.1:{port}"

    # The environment's deployer settings choose another address: checked and served there.
    target = {"host": "127.0.0.2"}
    bundle = make_bundle(tmp_path, "v2", files)
    result = deployer.deploy(make_request(bundle, port, target=target))
    assert answers("127.0.0.2", port) == {"host": "127.0.0.2", "bound": "127.0.0.2"}
    assert answers("127.0.0.1", port) is None
    assert result.url == f"http://127.0.0.2:{port}"
    assert result.details["previous_release"] == "v1"

    # A HOST variable of the environment is one way to say so too; the setting wins over it.
    bundle = make_bundle(tmp_path, "v3", files)
    deployer.deploy(make_request(bundle, port, env={"HOST": "0.0.0.0"}))  # noqa: S104
    assert answers("127.0.0.1", port) == {"host": "0.0.0.0", "bound": "0.0.0.0"}  # noqa: S104
    assert answers("127.0.0.2", port) is not None
    bundle = make_bundle(tmp_path, "v4", files)
    deployer.deploy(make_request(bundle, port, env={"HOST": "0.0.0.0"}, target=target))  # noqa: S104
    assert answers("127.0.0.2", port)["host"] == "127.0.0.2"
    assert answers("127.0.0.1", port) is None

    # A v4 that fails goes back to v4 where it listened, even when the setting changed since.
    with pytest.raises(DeployFailed) as failed:
        deployer.deploy(
            make_request(
                make_bundle(tmp_path, "v5"),  # the plain server: it never binds 127.0.0.3
                port,
                target={"host": "127.0.0.3", "verify_first": False},
                timeout=2,
            )
        )
    assert failed.value.rolled_back is True
    assert answers("127.0.0.2", port)["host"] == "127.0.0.2"
    with pytest.raises(DeployError, match="not an address"):
        deployer.deploy(make_request(bundle, port, target={"host": "a host; rm -rf /"}))
