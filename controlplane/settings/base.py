"""Settings shared by every stack. Everything comes from the environment (django-environ).

The embedded default (no server to install) is SQLite under ``var/`` and kombu's filesystem
broker; set ``DATABASE_URL`` and ``REDIS_URL`` to run on PostgreSQL and Redis instead.
"""

from datetime import timedelta
from pathlib import Path

import environ
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent.parent
env = environ.Env()
env.smart_cast = False
if (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

# Where the control plane keeps its own files: SQLite, broker folders, job logs, workspaces.
VAR_DIR = Path(env.str("CONTROLPLANE_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Public base URL, used in links sent out (commit statuses, Slack, email).
SITE_URL = env.str("CONTROLPLANE_SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_htmx",
    "template_partials",
    "axes",
    "apps.core",
    "apps.accounts",
    "apps.projects",
    "apps.pipelines",
    "apps.training",
    "apps.releases",
    "apps.monitoring",
    "apps.notifications",
    "apps.webhooks",
    "apps.demo",
]

MIDDLEWARE = [
    # First, so the time it records covers every other middleware too.
    "apps.monitoring.middleware.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "apps.core.security.ContentSecurityPolicyMiddleware",
    # Last, as django-axes asks: turns a locked-out sign-in into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'controlplane.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Persistent connections: Celery closes "old" connections around every task, so with 0 each
# job step would pay for a new PostgreSQL connection. Health checks drop dead ones.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # TRICKY: web, worker and beat share one SQLite file. IMMEDIATE transactions take the write
    # lock up front (so select_for_update's serialisation still holds) and WAL lets readers run
    # beside the one writer; the timeout makes writers queue instead of failing at once.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -----------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out account or address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# --- Failed sign-ins and token attempts (django-axes; docs/security.md) ----------------------
# After LIMIT failures for one account, or from one address, that account or address is refused
# (429) for LOCKOUT_MINUTES; an admin unlocks it sooner (Admin › Axes › Access attempts).
AXES_ENABLED = env.bool("CONTROLPLANE_LOGIN_LOCKOUT", default=True)
AXES_FAILURE_LIMIT = env.int("CONTROLPLANE_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("CONTROLPLANE_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = "apps.accounts.lockout.lockout_parameters"
AXES_CLIENT_IP_CALLABLE = "apps.accounts.lockout.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
# Behind a proxy that sets it, the request header holding the client's address, e.g.
# HTTP_X_REAL_IP (Django's META name). Empty: REMOTE_ADDR.
CLIENT_IP_HEADER = env.str("CONTROLPLANE_CLIENT_IP_HEADER", default="")

# --- Content-Security-Policy (apps/core/security.py) ----------------------------------------
CSP_REPORT_ONLY = env.bool("CONTROLPLANE_CSP_REPORT_ONLY", default=False)
CSP_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self' 'unsafe-inline'",
    "img-src": "'self' data:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}

# --- I18N / time ----------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Secrets at rest ------------------------------------------------------------------------
# Fernet keys (urlsafe base64, 32 bytes). The first encrypts; all decrypt, so keys can rotate.
FIELD_ENCRYPTION_KEYS = env.list("CONTROLPLANE_ENCRYPTION_KEYS", default=[])

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First: ingest tokens (cpi_…) may reach the two ingest endpoints only (403 elsewhere).
        "apps.monitoring.authentication.IngestTokenAuthentication",
        "apps.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "apps.core.api.schema.HouseAutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exceptions.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "apps.core.api.parsers.JSONParser",  # with a nesting limit (MAX_JSON_DEPTH)
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_THROTTLE_RATES": {"anon": "60/min"},
}
# Request bodies: JSON nested deeper than this is refused (400); inline pipelines in
# POST /api/v1/runs/ have at most this many jobs.
MAX_JSON_DEPTH = env.int("CONTROLPLANE_MAX_JSON_DEPTH", default=32)
INLINE_JOBS_MAX = env.int("CONTROLPLANE_INLINE_JOBS_MAX", default=100)
SPECTACULAR_SETTINGS = {
    "TITLE": "Control plane API",
    "DESCRIPTION": "Projects, environments, pipeline runs, jobs, releases, deployments and "
    "promotions. Authenticate with `Authorization: Bearer <token>` (tokens are created in the "
    "UI under *API tokens* or with `manage.py create_api_token`).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets are served from our own static files, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "apps.pipelines.choices.RunStatus",
        "JobStatusEnum": "apps.pipelines.choices.JobStatus",
        "DeploymentStatusEnum": "apps.releases.choices.DeploymentStatus",
        "PromotionStatusEnum": "apps.releases.choices.PromotionStatus",
        "NotificationTargetKindEnum": "apps.notifications.choices.TargetKind",
        "NotificationEventEnum": "apps.notifications.choices.Event",
        "JobKindEnum": "apps.pipelines.choices.JobKind",
        "RoleEnum": "apps.accounts.choices.Role",
        "GitProviderEnum": "apps.projects.choices.GitProvider",
        "WebhookDeliveryStatusEnum": "apps.webhooks.choices.DeliveryStatus",
        "SeverityEnum": "apps.monitoring.choices.Severity",
    },
}

# --- Celery ---------------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    # The embedded broker: queue files in a folder, no server. Polled every 20 ms so a task
    # starts about as fast as on Redis (measured: ~22 ms round trip vs ~970 ms with the default).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Broadcasts (worker remote control); the default is ./control in the working directory.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.02,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600 * 6}
# The database is the truth for every job; results are never read back from Celery.
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3600 * 6)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600 * 6 + 300)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Jobs go to the queue of their kind, or to a queue only capable workers consume when a rule
# here takes what they ask for (`resources:`; apps/pipelines/routing.py, docs/workers.md), e.g.
# CONTROLPLANE_JOB_RESOURCE_QUEUES='[{"queue": "gpu", "gpu": 1, "max": {"gpu": 4}}]'.
JOB_RESOURCE_QUEUES = env.json("CONTROLPLANE_JOB_RESOURCE_QUEUES", default=[])
CELERY_TASK_QUEUES = [
    Queue(name)
    for name in dict.fromkeys(
        [
            *("default", "test", "build", "deploy", "train", "monitor"),
            *(r["queue"] for r in JOB_RESOURCE_QUEUES if isinstance(r, dict) and r.get("queue")),
        ]
    )
]
CELERY_TASK_ROUTES = {
    "core.*": {"queue": "default"},
    "pipelines.sweep_*": {"queue": "default"},
    "pipelines.reap_*": {"queue": "default"},
    "releases.run_deployment": {"queue": "deploy"},
    "releases.supervise_services": {"queue": "deploy"},
    "releases.prune_deploy_files": {"queue": "deploy"},
    "monitoring.run_due_checks": {"queue": "default"},
    "monitoring.check_environment": {"queue": "monitor"},
    "monitoring.build_reference": {"queue": "monitor"},
    "monitoring.prune_observations": {"queue": "monitor"},
    "monitoring.probe_services": {"queue": "monitor"},
    "monitoring.evaluate_rules": {"queue": "default"},
    "monitoring.dispatch_alerts": {"queue": "default"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# TRICKY: without this, Celery's Django fixup closes every database connection before and after
# each task, so every job claim opened a new PostgreSQL connection (10-20 ms a task here).
# Connections are kept instead and judged as a web request's are (CONN_MAX_AGE,
# CONN_HEALTH_CHECKS): controlplane/celery.py calls close_old_connections() around each task.
CELERY_DB_REUSE_MAX = 2**31
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# The sweeper and the reaper (see docs/architecture.md, "Execution guarantees").
SWEEPER_INTERVAL = env.int("CONTROLPLANE_SWEEPER_INTERVAL", default=15)
REAPER_INTERVAL = env.int("CONTROLPLANE_REAPER_INTERVAL", default=15)
# A queued job nobody claimed for this long is sent to the broker again.
JOB_UNCLAIMED_AFTER = timedelta(seconds=env.int("CONTROLPLANE_JOB_UNCLAIMED_AFTER", default=30))
# Running jobs write a heartbeat this often; one silent for JOB_HEARTBEAT_TIMEOUT is "worker lost".
JOB_HEARTBEAT_INTERVAL = env.float("CONTROLPLANE_JOB_HEARTBEAT_INTERVAL", default=5.0)
JOB_HEARTBEAT_TIMEOUT = timedelta(seconds=env.int("CONTROLPLANE_JOB_HEARTBEAT_TIMEOUT", default=45))
# A worker that finishes a job runs the next ready job of the run itself when it serves that
# job's queue, claimed in the finishing transaction (no broker hop; docs/architecture.md).
JOBS_TAKE_NEXT = env.bool("CONTROLPLANE_JOBS_TAKE_NEXT", default=True)
# Per-step metric points a job may log to $CONTROLPLANE_METRICS_LOG (more are dropped, counted).
METRICS_MAX_POINTS = env.int("CONTROLPLANE_METRICS_MAX_POINTS", default=100_000)
# --- Deploys (see docs/deployers.md) --------------------------------------------------------
# A running deployment that logged nothing for this long is failed as "worker lost".
DEPLOY_STALE_AFTER = timedelta(seconds=env.int("CONTROLPLANE_DEPLOY_STALE_AFTER", default=900))
# How often services of the process deployer are checked and restarted when they died.
SUPERVISE_INTERVAL = env.int("CONTROLPLANE_SUPERVISE_INTERVAL", default=10)
# A reminder goes to the approvers this long before a pending promotion expires.
APPROVAL_REMINDER_BEFORE = timedelta(
    minutes=env.int("CONTROLPLANE_APPROVAL_REMINDER_MINUTES", default=120)
)
# --- Drift checks (docs/monitoring.md) -------------------------------------------------------
# How often beat looks for monitored environments whose next check window is due (one query).
MONITOR_DUE_INTERVAL = env.int("CONTROLPLANE_MONITOR_DUE_INTERVAL", default=3)
# A window is checked this long after it ended: observations arrive in batches, a little late
# (the example's telemetry flushes every 5 s). Delay + due interval + the check itself is what
# a drift alert waits after its window closes: one interval + ~10 s (bench/drift_alert.py).
MONITOR_CHECK_DELAY_SECONDS = env.int("CONTROLPLANE_MONITOR_CHECK_DELAY_SECONDS", default=6)
# How often every deployed service is probed (health, /metrics, CPU, memory): monitoring.
SERVICE_PROBE_INTERVAL = env.int("CONTROLPLANE_SERVICE_PROBE_INTERVAL", default=30)
# --- Alerts (docs/alerts.md) -----------------------------------------------------------------
# The control plane's own rules (and the alert dispatcher after them) run this often.
RULES_INTERVAL = env.int("CONTROLPLANE_RULES_INTERVAL", default=30)
# A new alert is told this long after its group's first alert started (batching; alerts that
# fire in one pass are told together anyway); a firing alert is told again every
# ALERT_REPEAT_HOURS.
ALERT_GROUP_WAIT_SECONDS = env.int("CONTROLPLANE_ALERT_GROUP_WAIT_SECONDS", default=0)
ALERT_REPEAT_HOURS = env.float("CONTROLPLANE_ALERT_REPEAT_HOURS", default=4.0)
# Defaults of the rules when the spec's monitor.alerts does not say (0 turns a rule off).
ALERT_WEBHOOK_FAILURES = env.int("CONTROLPLANE_ALERT_WEBHOOK_FAILURES", default=3)
ALERT_WEBHOOK_FAILURES_LOOKBACK_DAYS = env.int(
    "CONTROLPLANE_ALERT_WEBHOOK_FAILURES_LOOKBACK_DAYS", default=7
)
ALERT_PROMOTION_WAITING_HOURS = env.float(
    "CONTROLPLANE_ALERT_PROMOTION_WAITING_HOURS", default=24.0
)
# Bearer token Alertmanager sends to /integrations/alertmanager/ (empty: the receiver refuses).
ALERTMANAGER_TOKEN = env.str("CONTROLPLANE_ALERTMANAGER_TOKEN", default="")
CELERY_BEAT_SCHEDULE = {
    "monitoring.run_due_checks": {
        "task": "monitoring.run_due_checks",
        "schedule": timedelta(seconds=MONITOR_DUE_INTERVAL),
        "options": {"expires": MONITOR_DUE_INTERVAL},
    },
    # Observations and labels past OBSERVATION_RETENTION_DAYS: files and rows.
    "monitoring.prune_observations": {
        "task": "monitoring.prune_observations",
        "schedule": timedelta(days=1),
        "options": {"expires": 3600},
    },
    "pipelines.sweep_unclaimed_jobs": {
        "task": "pipelines.sweep_unclaimed_jobs",
        "schedule": timedelta(seconds=SWEEPER_INTERVAL),
        "options": {"expires": SWEEPER_INTERVAL},
    },
    "pipelines.reap_lost_jobs": {
        "task": "pipelines.reap_lost_jobs",
        "schedule": timedelta(seconds=REAPER_INTERVAL),
        "options": {"expires": REAPER_INTERVAL},
    },
    # Schedules whose fire time passed unserved (beat was down, or its message was lost).
    "pipelines.sweep_schedules": {
        "task": "pipelines.sweep_schedules",
        "schedule": timedelta(seconds=SWEEPER_INTERVAL),
        "options": {"expires": SWEEPER_INTERVAL},
    },
    "releases.expire_promotions": {
        "task": "releases.expire_promotions",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    "releases.remind_promotions": {
        "task": "releases.remind_promotions",
        "schedule": timedelta(minutes=1),
        "options": {"expires": 60},
    },
    # Deployments whose worker went silent, and pending ones whose message was lost or that
    # wait for a freeze window or the environment's lock.
    "releases.sweep_deployments": {
        "task": "releases.sweep_deployments",
        "schedule": timedelta(seconds=SWEEPER_INTERVAL),
        "options": {"expires": SWEEPER_INTERVAL},
    },
    "releases.supervise_services": {
        "task": "releases.supervise_services",
        "schedule": timedelta(seconds=SUPERVISE_INTERVAL),
        "options": {"expires": SUPERVISE_INTERVAL},
    },
    "monitoring.probe_services": {
        "task": "monitoring.probe_services",
        "schedule": timedelta(seconds=SERVICE_PROBE_INTERVAL),
        "options": {"expires": SERVICE_PROBE_INTERVAL},
    },
    # Notifications whose delivery message was lost (pending for 15 minutes) are sent again.
    "notifications.sweep_deliveries": {
        "task": "notifications.sweep_deliveries",
        "schedule": timedelta(minutes=5),
        "options": {"expires": 300},
    },
    "releases.prune_deploy_files": {
        "task": "releases.prune_deploy_files",
        "schedule": timedelta(days=1),
        "options": {"expires": 3600},
    },
    "webhooks.prune_deliveries": {
        "task": "webhooks.prune_deliveries",
        "schedule": timedelta(days=1),
        "options": {"expires": 3600},
    },
    # The outbox sweeper: runs of accepted pushes whose wake-up message was lost.
    "webhooks.start_runs": {
        "task": "webhooks.start_runs",
        "schedule": timedelta(seconds=SWEEPER_INTERVAL),
        "options": {"expires": SWEEPER_INTERVAL},
    },
    # The control plane's alert rules, then the alert dispatcher (group wait, repeats, silences
    # that ended): apps/monitoring/rules.py and dispatch.py.
    "monitoring.evaluate_rules": {
        "task": "monitoring.evaluate_rules",
        "schedule": timedelta(seconds=RULES_INTERVAL),
        "options": {"expires": RULES_INTERVAL},
    },
}

# --- Webhooks -------------------------------------------------------------------------------
# Largest body a receiver reads (413 above it). The receivers read the request stream themselves,
# capped at this, so DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) does not apply to them.
WEBHOOK_MAX_BODY_BYTES = env.int("CONTROLPLANE_WEBHOOK_MAX_BODY_BYTES", default=5 * 1024 * 1024)
# How far a signed timestamp (GitLab signing tokens) may be from this clock, in seconds.
WEBHOOK_TIMESTAMP_TOLERANCE = env.int("CONTROLPLANE_WEBHOOK_TIMESTAMP_TOLERANCE", default=300)
# Rejected and invalid deliveries are deleted, and older payloads dropped, after this long.
WEBHOOK_DELIVERY_RETENTION = timedelta(
    days=env.int("CONTROLPLANE_WEBHOOK_DELIVERY_RETENTION_DAYS", default=30)
)
# Unverified requests (bad signature, unknown project, oversized) of one source (provider,
# project slug, address): this many a minute get a ledger row each; the rest are only counted
# (webhooks.RejectedDeliveryCount, one row per source and minute).
WEBHOOK_REJECTED_ROWS_PER_MINUTE = env.int(
    "CONTROLPLANE_WEBHOOK_REJECTED_ROWS_PER_MINUTE", default=5
)
# Seconds to wait for the Git server when reporting a commit status.
COMMIT_STATUS_TIMEOUT = env.float("CONTROLPLANE_COMMIT_STATUS_TIMEOUT", default=10.0)

# --- Notifications (docs/notifications.md) --------------------------------------------------
# Secrets: NAME, or the file named by NAME_FILE (Docker / Kubernetes secrets). Empty: no Slack.
SLACK_BOT_TOKEN = (
    Path(env.str("SLACK_BOT_TOKEN_FILE")).read_text(encoding="utf-8").strip()
    if env.str("SLACK_BOT_TOKEN_FILE", default="")
    else env.str("SLACK_BOT_TOKEN", default="")
)
SLACK_SIGNING_SECRET = (
    Path(env.str("SLACK_SIGNING_SECRET_FILE")).read_text(encoding="utf-8").strip()
    if env.str("SLACK_SIGNING_SECRET_FILE", default="")
    else env.str("SLACK_SIGNING_SECRET", default="")
)
SLACK_API_URL = env.str("SLACK_API_URL", default="https://slack.com/api/")

# --- Jobs -----------------------------------------------------------------------------------
# A project's repository may be a local path (file:// or /path) only when this is on: a worker
# clones it with its own rights (docs/repositories.md). The demo and the test suite turn it on.
CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES = env.bool(
    "CONTROLPLANE_ALLOW_LOCAL_REPOSITORIES", default=False
)
# Who may start a run of inline jobs (`jobs` in POST /api/v1/runs/: code nobody pushed, run
# without protected variables): a project role, "admin" unless set (docs/secrets.md).
CONTROLPLANE_INLINE_JOBS_ROLE = env.str("CONTROLPLANE_INLINE_JOBS_ROLE", default="admin")
JOB_LOG_DIR = Path(env.str("CONTROLPLANE_JOB_LOG_DIR", default=str(VAR_DIR / "logs")))
WORKSPACE_DIR = Path(env.str("CONTROLPLANE_WORKSPACE_DIR", default=str(VAR_DIR / "workspaces")))
ARTIFACT_DIR = Path(env.str("CONTROLPLANE_ARTIFACT_DIR", default=str(VAR_DIR / "artifacts")))
# Datasets jobs produce and consume, stored content-addressed (docs/datasets.md).
DATASET_DIR = Path(env.str("CONTROLPLANE_DATASET_DIR", default=str(VAR_DIR / "datasets")))
# A dev (synthetic-data) run gets at most this many generated rows per consumed dataset.
DATASET_SYNTHETIC_MAX_ROWS = env.int("CONTROLPLANE_DATASET_SYNTHETIC_MAX_ROWS", default=100_000)
# --- Monitoring (the CM loop, docs/monitoring.md) -------------------------------------------
# Observations and labels deployed services post, one Parquet file per batch, in folders per window.
OBSERVATION_DIR = Path(
    env.str("CONTROLPLANE_OBSERVATION_DIR", default=str(VAR_DIR / "observations"))
)
# The length of one storage window (and the default drift-check window), in seconds.
OBSERVATION_WINDOW_SECONDS = env.int("CONTROLPLANE_OBSERVATION_WINDOW_SECONDS", default=3600)
# Observations and labels older than this are deleted (files and rows) by the daily prune.
OBSERVATION_RETENTION_DAYS = env.int("CONTROLPLANE_OBSERVATION_RETENTION_DAYS", default=30)
# One posted batch: its body as sent and decompressed (docs/monitoring-ingest.md).
INGEST_MAX_BODY_BYTES = env.int("CONTROLPLANE_INGEST_MAX_BODY_MB", default=16) << 20
INGEST_MAX_DECODED_BYTES = env.int("CONTROLPLANE_INGEST_MAX_DECODED_MB", default=64) << 20
# --- Prometheus (docs/monitoring-prometheus.md) ---------------------------------------------
# /metrics and the service discovery answer a bearer token, or clients in the allow-list
# (addresses or networks: "10.0.0.0/8,127.0.0.1"). Neither set: 403.
METRICS_TOKEN = (
    Path(env.str("CONTROLPLANE_METRICS_TOKEN_FILE")).read_text(encoding="utf-8").strip()
    if env.str("CONTROLPLANE_METRICS_TOKEN_FILE", default="")
    else env.str("CONTROLPLANE_METRICS_TOKEN", default="")
)
METRICS_ALLOW = env.list("CONTROLPLANE_METRICS_ALLOW", default=[])
# A worker serves its own /metrics on this port when set (a worker on another host; set the
# address to one Prometheus reaches, e.g. 0.0.0.0 on a private network: it has no token).
WORKER_METRICS_PORT = env.int("CONTROLPLANE_WORKER_METRICS_PORT", default=0)
WORKER_METRICS_ADDR = env.str("CONTROLPLANE_WORKER_METRICS_ADDR", default="127.0.0.1")
# The process deployer's releases, virtualenvs, service state and logs (docs/deployers.md).
CONTROLPLANE_DEPLOY_DIR = Path(env.str("CONTROLPLANE_DEPLOY_DIR", default=str(VAR_DIR / "deploy")))
# Runners this worker accepts; a job asking for another fails with a clear message.
RUNNERS_ALLOWED = env.list("CONTROLPLANE_RUNNERS", default=["local", "docker"])
# The docker runner (see docs/runners.md).
CONTROLPLANE_DOCKER_DEFAULT_IMAGE = env.str(
    "CONTROLPLANE_DOCKER_DEFAULT_IMAGE", default="python:3.11-slim"
)
CONTROLPLANE_DOCKER_NETWORK = env.str("CONTROLPLANE_DOCKER_NETWORK", default="host")  # or none
CONTROLPLANE_DOCKER_MEMORY = env.str("CONTROLPLANE_DOCKER_MEMORY", default="2g")
CONTROLPLANE_DOCKER_CPUS = env.float("CONTROLPLANE_DOCKER_CPUS", default=2.0)
CONTROLPLANE_DOCKER_PULL = env.bool("CONTROLPLANE_DOCKER_PULL", default=False)
# The kubernetes runner (`runner: kubernetes`; docs/workers.md): one batch/v1 Job per job, in
# the cluster named by API_URL + TOKEN (or TOKEN_FILE), else KUBECONFIG (+ CONTEXT), else the
# worker's in-cluster service account — the same keys as the kubernetes deployer's target.
CONTROLPLANE_KUBE_RUNNER = {
    "api_url": env.str("CONTROLPLANE_KUBE_RUNNER_API_URL", default=""),
    "verify_ssl": env.bool("CONTROLPLANE_KUBE_RUNNER_VERIFY_SSL", default=True),
    "ca_cert": env.str("CONTROLPLANE_KUBE_RUNNER_CA_CERT", default=""),
    "kubeconfig": env.str("CONTROLPLANE_KUBE_RUNNER_KUBECONFIG", default=""),
    "context": env.str("CONTROLPLANE_KUBE_RUNNER_CONTEXT", default=""),
    "namespace": env.str("CONTROLPLANE_KUBE_RUNNER_NAMESPACE", default="default"),
    # The pods' service account; none given: the namespace's default, with no token mounted.
    "service_account": env.str("CONTROLPLANE_KUBE_RUNNER_SERVICE_ACCOUNT", default=""),
    "default_image": env.str(
        "CONTROLPLANE_KUBE_RUNNER_DEFAULT_IMAGE", default=CONTROLPLANE_DOCKER_DEFAULT_IMAGE
    ),
    "image_pull_policy": env.str("CONTROLPLANE_KUBE_RUNNER_IMAGE_PULL_POLICY", default=""),
    "image_pull_secret": env.str("CONTROLPLANE_KUBE_RUNNER_IMAGE_PULL_SECRET", default=""),
    # A finished Job is deleted by the runner; this is the cluster's backstop when the worker
    # that watched it is gone.
    "ttl_seconds": env.int("CONTROLPLANE_KUBE_RUNNER_TTL_SECONDS", default=600),
    # A ReadWriteMany PersistentVolumeClaim holding this worker's WORKSPACE_DIR: the job's
    # checkout is mounted at /workspace from it. Empty: no workspace in the pod.
    "workspace_claim": env.str("CONTROLPLANE_KUBE_RUNNER_WORKSPACE_CLAIM", default=""),
}
CONTROLPLANE_KUBE_RUNNER_TOKEN = (
    Path(env.str("CONTROLPLANE_KUBE_RUNNER_TOKEN_FILE")).read_text(encoding="utf-8").strip()
    if env.str("CONTROLPLANE_KUBE_RUNNER_TOKEN_FILE", default="")
    else env.str("CONTROLPLANE_KUBE_RUNNER_TOKEN", default="")
)
# Build jobs also build a Docker image from their bundle (the CD loop turns this on), with
# BASE_IMAGE as a build argument when set (CI: local/python:3.11-bookworm).
CONTROLPLANE_BUILD_IMAGES = env.bool("CONTROLPLANE_BUILD_IMAGES", default=False)
CONTROLPLANE_BUILD_BASE_IMAGE = env.str("CONTROLPLANE_BUILD_BASE_IMAGE", default="")
# Optional registry the built images are pushed to (e.g. registry.example.com/ml); the engine's
# own credentials are used (docker login on the worker host).
CONTROLPLANE_REGISTRY = env.str("CONTROLPLANE_REGISTRY", default="")
# Environment variable names that reach a job from the worker's own environment.
JOB_ENV_PASSTHROUGH = env.list(
    "CONTROLPLANE_JOB_ENV_PASSTHROUGH", default=["PATH", "LANG", "LC_ALL", "TZ", "HOME"]
)

# --- Cache ----------------------------------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Email ----------------------------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="controlplane@localhost")

# --- Logging: everything to stdout, one line per record -------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "stream": "ext://sys.stdout",
        }
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "celery": {"level": LOG_LEVEL},
        # The filesystem transport has no host; kombu warns about it on every connection.
        "kombu.connection": {"level": "ERROR"},
    },
}
