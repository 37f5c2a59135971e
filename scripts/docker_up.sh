#!/usr/bin/env bash
# Bring up a real Docker engine on a Debian 12 developer/CI machine and build the local base
# image local/python:3.11-bookworm (no image registry is reachable here). Idempotent: run it as
# often as you like; a running engine and an existing image are reused.
#
# Network safety: the engine runs with no bridge, no iptables and no masquerading. Containers use
# network_mode "host" or "none". Never create Docker networks on these machines.
#
# Usage: scripts/docker_up.sh          bring up the engine and the image
#        scripts/docker_up.sh --stop   stop the dockerd this script started
# See docs/runners.md.
set -euo pipefail

IMAGE="${CONTROLPLANE_BASE_IMAGE:-local/python:3.11-bookworm}"
SUITE=bookworm
DAEMON_JSON=/etc/docker/daemon.json
DOCKERD_LOG=/var/log/dockerd.log
DOCKERD_PID=/var/run/docker.pid
WAIT_SECONDS=60

T0=$(date +%s.%N)
STEP_T0=$T0

log() { printf '[docker_up] %s\n' "$*"; }
die() { printf '[docker_up] ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
step_done() {
    log "$1 done in $(elapsed "$STEP_T0") s"
    STEP_T0=$(date +%s.%N)
}

[[ $EUID -eq 0 ]] || die "run as root (it installs packages and starts dockerd)"
case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
    unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
    *) die "DOCKER_HOST=$DOCKER_HOST: this script manages only the local engine; unset it" ;;
esac
# Two CI steps running this at once must not start two daemons.
exec 9>/var/lock/controlplane-docker-up.lock
flock 9

# The Debian 20.10 client matches the engine; /usr/local/bin/docker (28.x) works but is noisier.
docker_cli() {
    if [[ -x /usr/bin/docker ]]; then /usr/bin/docker "$@"; else docker "$@"; fi
}

engine_up() { docker_cli info >/dev/null 2>&1; }

packages_missing() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
            || missing+=("$pkg")
    done
    echo "${missing[@]:-}"
}

install_packages() {
    local missing
    missing=$(packages_missing "$@")
    if [[ -z $missing ]]; then
        log "packages already installed: $*"
        return
    fi
    log "installing: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is wanted
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

write_daemon_json() {
    mkdir -p "$(dirname "$DAEMON_JSON")"
    # Merge into any existing file; the storage driver is passed as a flag, so it must not also
    # be in the file (dockerd refuses an option given twice).
    python3 - "$DAEMON_JSON" <<'PY'
import json, sys
path = sys.argv[1]
try:
    with open(path) as fh:
        conf = json.load(fh)
except FileNotFoundError:
    conf = {}
conf.pop("storage-driver", None)
conf.update({"bridge": "none", "iptables": False, "ip6tables": False, "ip-masq": False})
with open(path, "w") as fh:
    json.dump(conf, fh, indent=2)
    fh.write("\n")
PY
    log "wrote $DAEMON_JSON: $(tr -d '\n ' <"$DAEMON_JSON")"
}

dockerd_running_pid() {
    local pid
    [[ -f $DOCKERD_PID ]] || return 1
    pid=$(cat "$DOCKERD_PID" 2>/dev/null) || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

wait_for_engine() {
    local pid=$1 deadline=$((SECONDS + WAIT_SECONDS))
    while ((SECONDS < deadline)); do
        engine_up && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

stop_dockerd() {
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
    if mountpoint -q /run/docker/netns/default 2>/dev/null; then
        umount /run/docker/netns/default || true
    fi
}

start_dockerd() {
    local driver=$1 pid
    log "starting dockerd (storage driver $driver), log in $DOCKERD_LOG"
    # 9>&-: the daemon must not inherit (and hold forever) this script's lock.
    setsid /usr/sbin/dockerd --storage-driver="$driver" --pidfile="$DOCKERD_PID" \
        >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
    pid=$!
    if wait_for_engine "$pid"; then
        return 0
    fi
    log "dockerd with $driver did not come up within ${WAIT_SECONDS} s; last log lines:"
    tail -n 15 "$DOCKERD_LOG" >&2 || true
    stop_dockerd "$pid"
    return 1
}

if [[ ${1:-} == --stop ]]; then
    if pid=$(dockerd_running_pid); then
        log "stopping dockerd (pid $pid)"
        stop_dockerd "$pid"
    else
        log "no dockerd running from $DOCKERD_PID"
        if mountpoint -q /run/docker/netns/default 2>/dev/null; then
            umount /run/docker/netns/default || true
        fi
    fi
    exit 0
elif [[ -n ${1:-} ]]; then
    die "unknown argument: $1 (use --stop or nothing)"
fi

# --- 1. The engine ------------------------------------------------------------------------------
if engine_up; then
    log "Docker engine already up; skipping install and start"
else
    install_packages docker.io debootstrap
    step_done "packages"
    if pid=$(dockerd_running_pid); then
        log "dockerd (pid $pid) is starting already; waiting for it"
        wait_for_engine "$pid" || die "dockerd pid $pid did not answer; see $DOCKERD_LOG"
    else
        write_daemon_json
        : >"$DOCKERD_LOG"
        if ! start_dockerd overlay2; then
            log "falling back to the vfs storage driver (much slower builds)"
            start_dockerd vfs || die "dockerd does not start; see $DOCKERD_LOG"
        fi
    fi
    step_done "engine start"
fi

# --- 2. The local base image --------------------------------------------------------------------
debian_mirror() {
    local uri=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        uri=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
    fi
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" && $0 ~ /debian/ && $0 !~ /security/ { print $2; exit }' \
            /etc/apt/sources.list)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

build_image() {
    local rootfs mirror
    install_packages debootstrap
    mirror=$(debian_mirror)
    rootfs=$(mktemp -d /var/tmp/cp-rootfs.XXXXXX)
    # shellcheck disable=SC2064 # expand now: the path is fixed
    trap "umount_under '$rootfs'; rm -rf --one-file-system '$rootfs'" EXIT

    log "debootstrap $SUITE from $mirror into $rootfs"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates,git \
        "$SUITE" "$rootfs" "$mirror" >/var/log/cp-debootstrap.log 2>&1 \
        || { tail -n 30 /var/log/cp-debootstrap.log >&2; die "debootstrap failed"; }
    step_done "debootstrap"

    # This network intercepts TLS with its own CA: without it pip in a container cannot reach the
    # package index. Local CAs live in /usr/local/share/ca-certificates on Debian.
    if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
        cp -a /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
        log "added host CAs: $(cd /usr/local/share/ca-certificates && echo *)"
    fi
    # Its "rehash: skipping ca-certificates.crt" warning is normal.
    chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 \
        || die "update-ca-certificates failed in the image rootfs"
    # The host's pip.conf points at file:// indexes on its own disk, unreachable from a container;
    # the image gets only what makes pip trust the system bundle (which includes the CAs above).
    cat >"$rootfs/etc/pip.conf" <<'EOF'
[global]
cert = /etc/ssl/certs/ca-certificates.crt
disable-pip-version-check = true
root-user-action = ignore
EOF
    # python:3.11-slim lets `pip install` into the system interpreter; Debian's PEP 668 marker
    # would refuse it, and jobs written for the slim image must run unchanged here.
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED

    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/apt/* "$rootfs"/var/log/dpkg.log \
        "$rootfs"/var/log/bootstrap.log "$rootfs"/root/.cache
    umount_under "$rootfs"

    log "importing $IMAGE"
    tar --numeric-owner -C "$rootfs" -c . | docker_cli import \
        -c 'ENV LANG=C.UTF-8' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        -c 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
        -c 'CMD ["python3"]' \
        - "$IMAGE" >/dev/null
    rm -rf --one-file-system "$rootfs"
    trap - EXIT
    step_done "import"

    # Warn-only: the image is usable offline; pip needs the package index through the proxy.
    if docker_cli run --rm --network host "$IMAGE" \
        pip download --no-deps -q -d /tmp six >/dev/null 2>&1; then
        log "pip inside the image reaches the package index (network host)"
    else
        log "WARNING: pip inside $IMAGE could not reach the package index"
    fi
    step_done "pip check"
}

umount_under() {
    local target
    # Deepest first; debootstrap normally unmounts /proc and /sys itself, but not on failure.
    awk -v r="$1" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r \
        | while IFS= read -r target; do umount -l "$target" || true; done
}

if docker_cli image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE present; skipping build"
else
    build_image
fi

version=$(docker_cli version -f '{{.Server.Version}}')
driver=$(docker_cli info -f '{{.Driver}}')
image_id=$(docker_cli image inspect -f '{{.Id}}' "$IMAGE")
log "total $(elapsed "$T0") s"
echo "docker_up: engine ${version}, storage driver ${driver}, image ${IMAGE} ${image_id}"
