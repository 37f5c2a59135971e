#!/usr/bin/env python3
"""Check docker-compose.yml without a Docker engine (and without creating anything).

    .venv/bin/python .ci/check-compose.py [--file docker-compose.yml] [--schema compose-spec.json]

Static checks: YAML parses (anchors and merge keys included), Compose-spec keys are known,
every service has an image or a build, depends_on targets exist (and have a healthcheck when
waited on with service_healthy), named volumes are declared, web/worker/postgres/redis have
healthchecks, there is no `networks:` section and no obsolete `version:` key, `${...}`
interpolation is well formed and fails clearly without the required secrets, and a few
project rules (loopback-only port, shared var volume, SSL redirect off behind the proxy).

Then, when the Docker CLI has the compose plugin, `docker compose config -q` with dummy
secrets (that reads the file only: no engine, no containers, no networks). Without the
plugin that step is skipped and the reason printed. `--schema` additionally validates the
interpolated file against a Compose-spec JSON schema you have on disk.

Exit status: 0 when everything passes, 1 on any problem, 2 when the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# Secrets that must come from .env; compose must refuse to start without them (`${X:?msg}`).
REQUIRED_VARS = ("DJANGO_SECRET_KEY", "CONTROLPLANE_ENCRYPTION_KEYS", "POSTGRES_PASSWORD")
DUMMY_ENV = {
    "DJANGO_SECRET_KEY": "dummy-secret-key-for-compose-config-only",
    "CONTROLPLANE_ENCRYPTION_KEYS": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "POSTGRES_PASSWORD": "dummy-password",
}
REQUIRED_SERVICES = ("web", "worker", "beat", "postgres", "redis")
MUST_HAVE_HEALTHCHECK = ("web", "worker", "postgres", "redis")
REQUIRED_VOLUMES = ("pgdata", "redisdata", "cpvar")
APP_SERVICES = ("web", "worker", "beat")  # one image, shared var volume

# Key names from the Compose specification (compose-spec/compose-spec, schema/compose-spec.json).
TOP_LEVEL_KEYS = {"version", "name", "include", "services", "models", "networks", "volumes",
                  "secrets", "configs"}
SERVICE_KEYS = {
    "develop", "deploy", "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop",
    "cgroup", "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_shares", "cpu_quota", "cpu_period", "cpu_rt_period", "cpu_rt_runtime", "cpus", "cpuset",
    "credential_spec", "depends_on", "device_cgroup_rules", "devices", "dns", "dns_opt",
    "dns_search", "domainname", "entrypoint", "env_file", "label_file", "environment", "expose",
    "extends", "provider", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck",
    "hostname", "image", "init", "ipc", "isolation", "labels", "links", "logging", "mac_address",
    "mem_limit", "mem_reservation", "mem_swappiness", "memswap_limit", "network_mode", "models",
    "networks", "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports",
    "post_start", "pre_stop", "privileged", "profiles", "pull_policy", "pull_refresh_after",
    "read_only", "restart", "runtime", "scale", "security_opt", "shm_size", "secrets", "sysctls",
    "stdin_open", "stop_grace_period", "stop_signal", "storage_opt", "tmpfs", "tty", "ulimits",
    "use_api_socket", "user", "uts", "userns_mode", "volumes", "volumes_from", "working_dir",
}
HEALTHCHECK_KEYS = {"disable", "interval", "retries", "test", "timeout", "start_period",
                    "start_interval"}
DEPENDS_ON_KEYS = {"condition", "restart", "required"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART_POLICIES = {"no", "always", "on-failure", "unless-stopped"}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt},
# ${NAME+alt}, $NAME; `$$` is a literal dollar.
_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


class InterpolationError(Exception):
    pass


def interpolate(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("named"):
            return env.get(m.group("named"), "")
        name = m.group("braced")
        if name is None:
            raise InterpolationError(f"invalid interpolation format in {value!r}")
        op, arg, present = m.group("op"), m.group("arg") or "", name in env
        set_nonempty = present and env[name] != ""
        is_set = set_nonempty if op and op.startswith(":") else present
        if op in (":-", "-"):
            return env[name] if is_set else arg
        if op in (":?", "?"):
            if not is_set:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if is_set else ""
        return env.get(name, "")

    return _VAR.sub(sub, value)


def interpolate_tree(node, env: dict[str, str]):
    """Compose interpolates values, not keys."""
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def strings(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)
    elif isinstance(node, str):
        yield node


def env_mapping(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def volume_mounts(service: dict) -> list[tuple[str | None, str, str]]:
    """(source, target, type) of each mount; source None for anonymous volumes."""
    mounts = []
    for item in service.get("volumes") or []:
        if isinstance(item, dict):
            mounts.append((item.get("source"), item.get("target", ""), item.get("type", "")))
            continue
        parts = str(item).split(":")
        if len(parts) == 1:
            mounts.append((None, parts[0], "volume"))
            continue
        source, target = parts[0], parts[1]
        kind = "bind" if source.startswith(("/", ".", "~", "$")) else "volume"
        mounts.append((source, target, kind))
    return mounts


def check_static(doc: dict) -> list[str]:
    problems: list[str] = []
    add = problems.append

    if not isinstance(doc, dict):
        return ["the file is not a YAML mapping"]
    for key in doc:
        if key.startswith("x-"):
            continue
        if key not in TOP_LEVEL_KEYS:
            add(f"unknown top-level key {key!r}")
    if "version" in doc:
        add("obsolete top-level `version:` key (the Compose spec ignores it; remove it)")
    if "networks" in doc:
        add("top-level `networks:` section: this stack uses compose's default network only")

    services = doc.get("services")
    if not isinstance(services, dict) or not services:
        return problems + ["no services defined"]
    for name in REQUIRED_SERVICES:
        if name not in services:
            add(f"service {name!r} is missing")

    declared_volumes = doc.get("volumes") or {}
    if not isinstance(declared_volumes, dict):
        add("top-level `volumes:` must be a mapping")
        declared_volumes = {}
    for name in REQUIRED_VOLUMES:
        if name not in declared_volumes:
            add(f"named volume {name!r} is not declared under top-level volumes")
    used_volumes: set[str] = set()

    for name, svc in services.items():
        where = f"service {name!r}"
        if not isinstance(svc, dict):
            add(f"{where}: not a mapping")
            continue
        for key in svc:
            if not key.startswith("x-") and key not in SERVICE_KEYS:
                add(f"{where}: unknown key {key!r}")
        if not svc.get("image") and not svc.get("build"):
            add(f"{where}: has neither image nor build")
        if "networks" in svc:
            add(f"{where}: `networks:` is not allowed (default network only)")
        restart = svc.get("restart")
        if restart is not None and str(restart).split(":")[0] not in RESTART_POLICIES:
            add(f"{where}: unknown restart policy {restart!r}")

        deps = svc.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        if not isinstance(deps, dict):
            add(f"{where}: depends_on must be a list or a mapping")
            deps = {}
        for target, spec in deps.items():
            if target not in services:
                add(f"{where}: depends_on {target!r}, which is not a service")
                continue
            if target == name:
                add(f"{where}: depends on itself")
            spec = spec or {}
            for key in spec:
                if not key.startswith("x-") and key not in DEPENDS_ON_KEYS:
                    add(f"{where}: depends_on {target!r}: unknown key {key!r}")
            condition = spec.get("condition")
            if condition not in CONDITIONS:
                add(f"{where}: depends_on {target!r}: condition must be one of "
                    f"{sorted(CONDITIONS)}, not {condition!r}")
            if condition == "service_healthy":
                dep = services[target]
                hc = dep.get("healthcheck") if isinstance(dep, dict) else None
                if not hc or hc.get("disable") or not hc.get("test"):
                    add(f"{where}: waits for {target!r} to be healthy, but {target!r} "
                        "defines no healthcheck")

        hc = svc.get("healthcheck")
        if hc is not None:
            if not isinstance(hc, dict):
                add(f"{where}: healthcheck must be a mapping")
                hc = {}
            for key in hc:
                if not key.startswith("x-") and key not in HEALTHCHECK_KEYS:
                    add(f"{where}: healthcheck: unknown key {key!r}")
            test = hc.get("test")
            if isinstance(test, list) and (not test or test[0] not in ("CMD", "CMD-SHELL", "NONE")):
                add(f"{where}: healthcheck test list must start with CMD, CMD-SHELL or NONE")
        if name in MUST_HAVE_HEALTHCHECK and (not hc or hc.get("disable") or not hc.get("test")):
            add(f"{where}: needs a healthcheck with a test")

        for source, target, kind in volume_mounts(svc):
            if not target:
                add(f"{where}: a volume entry has no target path")
            if kind == "volume" and source:
                used_volumes.add(source)
                if source not in declared_volumes:
                    add(f"{where}: named volume {source!r} is not declared under top-level volumes")

    for name in declared_volumes:
        if name not in used_volumes:
            add(f"named volume {name!r} is declared but no service mounts it")
    return problems


def check_interpolation(doc: dict, raw_values: list[str]) -> tuple[list[str], dict | None]:
    problems: list[str] = []
    for value in raw_values:
        for m in _VAR.finditer(value):
            if m.group("invalid") is not None:
                problems.append(f"invalid `$` (use `$$` for a literal dollar) in {value!r}")
    if problems:
        return problems, None

    # The required secrets must be `${NAME:?message}`: compose refuses to start without them.
    for var in REQUIRED_VARS:
        if not any(re.search(r"\$\{" + var + r":\?[^}]+\}", v) for v in raw_values):
            problems.append(f"{var} must be interpolated as ${{{var}:?message}} so a missing "
                            ".env fails clearly")
        env = {k: v for k, v in DUMMY_ENV.items() if k != var}
        try:
            interpolate_tree(doc, env)
        except InterpolationError as exc:
            if var not in str(exc):
                problems.append(f"without {var}, interpolation failed on something else: {exc}")
        else:
            problems.append(f"the file interpolates fine without {var}; it should refuse")

    try:
        resolved = interpolate_tree(doc, dict(DUMMY_ENV))
    except InterpolationError as exc:
        return problems + [f"interpolation with the dummy .env failed: {exc}"], None
    return problems, resolved


def check_project_rules(resolved: dict) -> list[str]:
    """Rules of this project's stack, checked on the file as compose would see it."""
    problems: list[str] = []
    services = resolved.get("services") or {}
    if not all(isinstance(services.get(n), dict) for n in APP_SERVICES):
        return problems  # already reported

    images = {services[n].get("image") for n in APP_SERVICES}
    if len(images) != 1:
        problems.append("web, worker and beat should run the same image, "
                        f"not {sorted(map(str, images))}")

    for port in services["web"].get("ports") or []:
        text = str(port.get("host_ip", "")) if isinstance(port, dict) else str(port)
        if not text.startswith("127.0.0.1"):
            problems.append(f"web publishes {port!r}: bind to 127.0.0.1 by default "
                            "(the TLS proxy forwards to it)")

    for name in APP_SERVICES:
        env = env_mapping(services[name])
        if env.get("DJANGO_SECURE_SSL_REDIRECT", "").lower() not in ("false", "0", "no", "off"):
            problems.append(f"service {name!r}: DJANGO_SECURE_SSL_REDIRECT should default to "
                            "false (compose serves plain HTTP behind the operator's TLS proxy)")

    # Web serves the job logs the worker writes: both must mount cpvar at CONTROLPLANE_VAR_DIR.
    for name in ("web", "worker"):
        var_dir = env_mapping(services[name]).get("CONTROLPLANE_VAR_DIR")
        mounts = {src: tgt for src, tgt, kind in volume_mounts(services[name]) if kind == "volume"}
        if not var_dir:
            problems.append(f"service {name!r}: CONTROLPLANE_VAR_DIR is not set")
        elif mounts.get("cpvar") != var_dir:
            problems.append(f"service {name!r}: volume cpvar must be mounted at "
                            f"CONTROLPLANE_VAR_DIR ({var_dir}), not {mounts.get('cpvar')!r}")
    return problems


def check_schema(resolved: dict, schema_path: Path) -> list[str]:
    import jsonschema

    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    validator_cls = jsonschema.validators.validator_for(schema)
    validator = validator_cls(schema)
    return [
        f"schema: {'/'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}"
        for err in sorted(validator.iter_errors(resolved), key=lambda e: list(e.absolute_path))
    ]


def check_compose_cli(compose_file: Path) -> tuple[list[str], str]:
    """`docker compose config -q` when the plugin exists. Reads the file only."""
    docker = shutil.which("docker")
    if not docker:
        return [], "skipped `docker compose config -q`: no docker CLI on PATH"
    try:
        probe = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [docker, "compose", "version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"skipped `docker compose config -q`: `docker compose version` failed ({exc})"
    if probe.returncode != 0:
        why = (probe.stderr or probe.stdout).strip().splitlines()
        return [], ("skipped `docker compose config -q`: the docker CLI has no compose plugin "
                    f"({why[0] if why else 'exit ' + str(probe.returncode)})")
    env = {**os.environ, **DUMMY_ENV}
    result = subprocess.run(  # noqa: S603 - fixed argv, no shell
        [docker, "compose", "--project-directory", str(compose_file.parent),
         "-f", str(compose_file), "config", "-q"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        return [f"`docker compose config -q` failed: {output}"], ""
    return [], f"`docker compose config -q` passed ({probe.stdout.strip()})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=ROOT / "docker-compose.yml")
    parser.add_argument("--schema", type=Path,
                        help="a Compose-spec JSON schema file to validate against as well")
    parser.add_argument("--no-cli", action="store_true", help="skip `docker compose config -q`")
    args = parser.parse_args(argv)

    try:
        doc = yaml.safe_load(args.file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        print(f"check-compose: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2

    problems = check_static(doc)
    if isinstance(doc, dict):
        more, resolved = check_interpolation(doc, list(strings(doc)))
        problems += more
        if resolved is not None:
            problems += check_project_rules(resolved)
            if args.schema:
                problems += check_schema(resolved, args.schema)

    notes = []
    if args.no_cli:
        notes.append("skipped `docker compose config -q`: --no-cli")
    else:
        more, note = check_compose_cli(args.file)
        problems += more
        if note:
            notes.append(note)

    for note in notes:
        print(f"check-compose: {note}")
    rel = args.file.relative_to(ROOT) if args.file.is_relative_to(ROOT) else args.file
    problems = list(dict.fromkeys(problems))  # merge keys repeat the anchor's values
    if problems:
        for problem in problems:
            print(f"check-compose: {rel}: {problem}", file=sys.stderr)
        print(f"check-compose: {rel}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-compose: {rel}: OK ({len(doc['services'])} services"
          f"{', schema-valid' if args.schema else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
