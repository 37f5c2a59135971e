# The control plane image: one image for web (gunicorn), worker and beat; the command picks
# the role (see docker/entrypoint.sh). Run it with docker-compose.yml, see docs/deployment.md.
#
# BASE_IMAGE is python:3.11-slim by default. It also builds on a plain Debian bookworm image
# with python3 (e.g. CI's local/python:3.11-bookworm): the first RUN installs whatever of
# pip, venv and git the base lacks with apt-get.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

LABEL org.opencontainers.image.title="controlplane" \
      org.opencontainers.image.description="Self-hosted MLOps control plane (Django + Celery)"

# PATH is spelled out rather than extending $PATH: an imported base image (like CI's
# debootstrap one) may define no PATH at all, and ":$PATH" would then drop /usr/bin.
# DJANGO_STATIC_ROOT is outside CONTROLPLANE_VAR_DIR on purpose: the var dir is a named volume,
# a volume keeps the contents it was first created with, and upgrades would serve stale assets.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DJANGO_SETTINGS_MODULE=controlplane.settings.production \
    CONTROLPLANE_VAR_DIR=/var/lib/controlplane \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    PORT=8000

# System packages and the virtualenv.
# - git (+ ca-certificates, openssh-client for https/ssh remotes): the worker checks out code.
# - postgresql-client: pg_dump and pg_restore for `manage.py backup` / `restore` (docs/backup.md);
#   bookworm's is 15, the compose file's server.
# - Installing ca-certificates regenerates the system CA bundle. A CA the base image added to
#   that file by hand (say, a TLS-intercepting proxy's) would be lost, so it is appended back.
# - python3-venv only where the base's python3 cannot create a venv with pip (Debian's own
#   python3 ships ensurepip separately); python:3.11-slim already can.
# Package versions follow the base image's Debian release; $pkgs is word-split on purpose.
# hadolint ignore=DL3008,SC2086
RUN set -eux; \
    pkgs="git ca-certificates openssh-client postgresql-client"; \
    if ! python3 -m ensurepip --version >/dev/null 2>&1; then pkgs="$pkgs python3-venv"; fi; \
    bundle=/etc/ssl/certs/ca-certificates.crt; \
    if [ -s "$bundle" ]; then cp "$bundle" /tmp/base-ca-bundle.crt; fi; \
    if command -v apt-get >/dev/null 2>&1; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
        rm -rf /var/lib/apt/lists/*; \
        if [ -f /tmp/base-ca-bundle.crt ] && ! cmp -s /tmp/base-ca-bundle.crt "$bundle"; then \
            cat /tmp/base-ca-bundle.crt >> "$bundle"; \
        fi; \
        rm -f /tmp/base-ca-bundle.crt; \
    else \
        echo "no apt-get in BASE_IMAGE: it must already provide: $pkgs" >&2; \
    fi; \
    command -v git; \
    python3 -m venv /opt/venv; \
    /opt/venv/bin/python -m pip --version; \
    groupadd --system --gid 10001 controlplane; \
    useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/controlplane \
        --shell /usr/sbin/nologin controlplane; \
    install -d -o controlplane -g controlplane -m 0750 /var/lib/controlplane

WORKDIR /app

# Dependencies in their own layer: a code change does not reinstall them. pip verifies TLS
# against the system CA bundle (not its own copy), so a CA the base image trusts works here.
COPY requirements/ requirements/
RUN PIP_CERT=/etc/ssl/certs/ca-certificates.crt pip install -r requirements/prod.txt

COPY . .

# collectstatic imports the production settings, which refuse to load without secrets: the
# dummy values below exist only for this RUN line and are not in the image's environment.
# CONTROLPLANE_VAR_DIR points at a scratch dir so nothing root-owned lands in the real one.
RUN set -eux; \
    chmod 0755 docker/entrypoint.sh; \
    DJANGO_SECRET_KEY=collectstatic-build-only-not-a-secret \
    CONTROLPLANE_ENCRYPTION_KEYS=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
    DJANGO_ALLOWED_HOSTS=localhost \
    CONTROLPLANE_VAR_DIR=/tmp/controlplane-build \
        python manage.py collectstatic --noinput; \
    rm -rf /tmp/controlplane-build

# Numeric, so Kubernetes-style runAsNonRoot checks can verify it (uid 10001 = controlplane).
USER 10001:10001

EXPOSE 8000

# Liveness of the web process (gunicorn answers /healthz). docker-compose.yml overrides this
# for the worker (celery ping) and disables it for beat, which share the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/app/docker/entrypoint.sh", "healthcheck", "/healthz"]

ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["web"]
