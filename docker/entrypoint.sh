#!/bin/sh
# Entrypoint of the control plane image. The first argument picks the role:
#
#   web [gunicorn options]       migrate the database, then serve with gunicorn on $PORT
#   worker [celery options]      Celery worker (all queues unless -Q/--queues is given)
#   beat [celery options]        Celery beat with the database scheduler (run exactly one)
#   manage <command> [args]      python manage.py <command> [args]
#   healthcheck [path]           exit 0 if http://127.0.0.1:$PORT<path> answers 2xx
#   anything else                exec'd as given (e.g. `bash`, `celery -A controlplane ...`)
#
# Environment: PORT (8000), WEB_CONCURRENCY (3 gunicorn workers), GUNICORN_TIMEOUT (60),
# CONTROLPLANE_MIGRATE_ON_START (1; set 0 when several web replicas start at once and you
# migrate separately), CELERY_QUEUES (default,test,build,deploy,train,monitor),
# CELERY_CONCURRENCY (unset: one process per CPU), CELERY_LOG_LEVEL (INFO).
set -eu

cd "$(dirname "$0")/.."  # the project root: /app in the image

role="${1:-web}"
if [ "$#" -gt 0 ]; then shift; fi

# Prometheus multiprocess mode (docs/monitoring-prometheus.md): the folder is this container's
# own, so files left by its previous run are stale; empty it before any process writes.
prometheus_multiproc_reset() {
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -name '*.db' -type f -delete
    fi
}

case "$role" in
web)
    case "${CONTROLPLANE_MIGRATE_ON_START:-1}" in
    0 | false | no) echo "entrypoint: CONTROLPLANE_MIGRATE_ON_START=${CONTROLPLANE_MIGRATE_ON_START}, skipping migrate" ;;
    *) python manage.py migrate --noinput ;;
    esac
    prometheus_multiproc_reset
    exec gunicorn controlplane.wsgi:application \
        --config docker/gunicorn.conf.py \
        --bind "0.0.0.0:${PORT:-8000}" \
        --workers "${WEB_CONCURRENCY:-3}" \
        --timeout "${GUNICORN_TIMEOUT:-60}" \
        --access-logfile - \
        --error-logfile - \
        "$@"
    ;;
worker)
    # Default to every queue unless the caller names its own (e.g. `worker -Q build` on a
    # build host); a second -Q would otherwise silently replace the first.
    queues="-Q ${CELERY_QUEUES:-default,test,build,deploy,train,monitor}"
    for arg in "$@"; do
        case "$arg" in -Q* | --queues | --queues=*) queues="" ;; esac
    done
    concurrency="${CELERY_CONCURRENCY:+--concurrency ${CELERY_CONCURRENCY}}"
    prometheus_multiproc_reset
    # shellcheck disable=SC2086 # $queues and $concurrency are word-split on purpose
    exec celery -A controlplane worker $queues $concurrency -l "${CELERY_LOG_LEVEL:-INFO}" "$@"
    ;;
beat)
    # The schedule lives in the database (django_celery_beat): no schedule file is written,
    # so beat runs fine as the unprivileged user with a read-only /app.
    exec celery -A controlplane beat -l "${CELERY_LOG_LEVEL:-INFO}" \
        --scheduler django_celery_beat.schedulers:DatabaseScheduler "$@"
    ;;
manage)
    exec python manage.py "$@"
    ;;
healthcheck)
    # No curl in the slim image: probe with urllib. Django rejects a Host it does not allow
    # (400), so send the first concrete name from DJANGO_ALLOWED_HOSTS.
    exec python - "${1:-/healthz}" <<'EOF'
import os
import sys
import urllib.request

path = sys.argv[1]
hosts = [h.strip() for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(",")]
host = next((h.lstrip(".") for h in hosts if h and h != "*"), "localhost")
url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}{path}"
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Host": host}), timeout=4):
        pass
except Exception as exc:  # HTTPError (e.g. 503 from /readyz), connection refused, timeout
    print(f"healthcheck {url} (Host: {host}) failed: {exc}", file=sys.stderr)
    sys.exit(1)
EOF
    ;;
*)
    exec "$role" "$@"
    ;;
esac
