"""Settings for mlcp, read from the environment with embedded defaults.

With no environment at all, mlcp runs on a SQLite file and a development
signing key under MLCP_DATA_DIR (./data). Production sets DATABASE_URL,
SECRET_KEY, ALLOWED_HOSTS, MLCP_SIGNING_KEY and CELERY_BROKER_URL.
"""

import importlib.util
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from controlplane.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("MLCP_DATA_DIR", str(BASE_DIR / "data"))).resolve()
# 0700: the gate sandbox's "setuid" level relies on other users not reading it.
DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", False)
# The fallback key is only for local runs; `check --deploy` flags it (W009).
SECRET_KEY = env_str("SECRET_KEY") or "django-insecure-mlcp-development-only-key"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, not from a CDN
    "controlplane",
    "registry",
    "rollouts",
    "oncall",
    "ui",
]
# `manage.py demo` is the development-only `devtools` app: listed where a checkout has it, never installed.
try:
    if importlib.util.find_spec("devtools") is not None:
        INSTALLED_APPS.append("devtools")
except ImportError:  # blocked, as the import-boundary tests do: production has no devtools
    pass

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "controlplane.middleware.RequestLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'mlcp.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Workers, the web server and the controller share the file: wait for locks. WAL lets readers go on beside
    # the one writer; IMMEDIATE takes the write lock when a transaction begins, so two writers queue on the
    # timeout instead of one failing at once with "database is locked" when a read turns into a write.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 30, "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"})
    # A local file costs no server connection slot: each process keeps its connection across requests instead
    # of opening one (and running the pragmas above) for every request. WAL readers see each commit at once.
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 600)
    # A file, not memory, so tests can hand the test database to server and worker processes.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# The image collects static files at build time into MLCP_STATIC_ROOT (the data volume starts empty).
STATIC_ROOT = Path(env_str("MLCP_STATIC_ROOT", str(DATA_DIR / "static"))).resolve()
LOGIN_URL = "/accounts/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.tokens.ApiTokenAuthentication",  # hashed, expiring, revocable; DRF authtoken keys are not accepted
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.roles.IsViewer"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "mlcp API",
    "DESCRIPTION": "Model registry with signed artifacts, gates and canary rollouts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Request bodies get their own components (`...Request`): a read-only field is never asked of a client.
    "COMPONENT_SPLIT_REQUEST": True,
    # Every operation documents the common error body for its 4xx (controlplane.api.document_errors).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "controlplane.api.document_errors"],
    # Several choice fields are named `status`; each set gets a name that says whose it is.
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "registry.choices.VersionStatus",
        "AlertStatusEnum": "oncall.alertmanager.STATUSES",
    },
}

# Uploads stream through registry.upload.BlobUploadHandler; nothing is kept in memory.
FILE_UPLOAD_HANDLERS = ["registry.upload.BlobUploadHandler"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
MLCP_MAX_UPLOAD_BYTES = env_int("MLCP_MAX_UPLOAD_BYTES", 4 * 1024**3)
# A streamed upload whose next 4 MiB block takes longer than this is refused (upload_interrupted): a client that
# stops sending must not hold a web worker.
MLCP_UPLOAD_STALL_S = env_int("MLCP_UPLOAD_STALL_S", 60)
# Where artifact blobs live: `s3://bucket/prefix` (endpoint, region and credentials from the usual AWS
# variables, see registry/storage_s3.py), or a directory; unset, MLCP_ARTIFACT_DIR (DATA_DIR/artifacts).
_artifact_store = env_str("MLCP_ARTIFACT_STORE", "").strip()
if "://" in _artifact_store and not _artifact_store.startswith("s3://"):
    raise ImproperlyConfigured(f"MLCP_ARTIFACT_STORE must be s3://bucket/prefix or a directory, "
                               f"got {_artifact_store!r}")
MLCP_ARTIFACT_STORE = _artifact_store if _artifact_store.startswith("s3://") else ""
MLCP_ARTIFACT_DIR = Path((None if MLCP_ARTIFACT_STORE else _artifact_store)
                         or env_str("MLCP_ARTIFACT_DIR", str(DATA_DIR / "artifacts"))).resolve()

# Signing: the registry's private key (PEM, EC P-256/P-384). A development key
# is generated under DATA_DIR when none is configured, with a loud warning.
MLCP_SIGNING_KEY = env_str("MLCP_SIGNING_KEY")
MLCP_SIGNING_KEY_PATH = env_str("MLCP_SIGNING_KEY_PATH")
MLCP_SIGNER_IDENTITY = env_str("MLCP_SIGNER_IDENTITY", "mlcp-registry")
# Extra trusted public keys (PEM files, comma separated) for client-made bundles and rotation.
MLCP_TRUSTED_KEY_FILES = env_list("MLCP_TRUSTED_KEY_FILES", [])
MLCP_PUBLIC_URL = env_str("MLCP_PUBLIC_URL", "http://127.0.0.1:8000")

CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
if CELERY_BROKER_URL == "filesystem://":
    # The demo's broker: kombu's filesystem transport, a folder instead of a Redis server.
    _broker_dir = DATA_DIR / "broker"
    (_broker_dir / "processed").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(_broker_dir), "data_folder_out": str(_broker_dir),
                                       "processed_folder": str(_broker_dir / "processed"),
                                       "control_folder": str(_broker_dir / "control"),
                                       "store_processed": False}
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", None)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

PROMETHEUS_URL = env_str("PROMETHEUS_URL", "http://127.0.0.1:9090")
PROMETHEUS_TIMEOUT_S = env_int("PROMETHEUS_TIMEOUT_S", 10)

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Behind TLS-terminating ingress, redirects are the ingress's job; say so to check --deploy.
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS", [])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

# Rollout controller. The cluster: MLCP_K8S_HOST (an unauthenticated endpoint,
# e.g. an emulator), else $KUBECONFIG, else the in-cluster service account.
MLCP_K8S_HOST = env_str("MLCP_K8S_HOST")
KUBECONFIG = env_str("KUBECONFIG")
# Rollout webhooks are signed per Standard Webhooks (standardwebhooks.com) with this secret, `whsec_<base64>`.
# Its own secret, so receivers never hold SECRET_KEY; with a webhook set and no secret, nothing is sent.
MLCP_WEBHOOK_SECRET = env_str("MLCP_WEBHOOK_SECRET")
# Webhook URLs resolving to loopback, private, link-local (cloud metadata) and other non-public addresses are
# refused, except in these networks (CIDRs, comma-separated; e.g. an in-cluster receiver's 10.0.0.0/8).
MLCP_WEBHOOK_ALLOW_PRIVATE = env_list("MLCP_WEBHOOK_ALLOW_PRIVATE", [])
# The notification outbox (rollouts/outbox.py): attempts before a notification is dead-lettered, the first retry's
# delay doubling up to the cap (with jitter), and how long a sender holds a claimed one before another may retry it.
MLCP_WEBHOOK_MAX_ATTEMPTS = env_int("MLCP_WEBHOOK_MAX_ATTEMPTS", 12)
MLCP_WEBHOOK_RETRY_BASE_S = env_int("MLCP_WEBHOOK_RETRY_BASE_S", 10)
MLCP_WEBHOOK_RETRY_CAP_S = env_int("MLCP_WEBHOOK_RETRY_CAP_S", 3600)
MLCP_WEBHOOK_LEASE_S = env_int("MLCP_WEBHOOK_LEASE_S", 60)

# The gate sandbox (workers/sandbox): where uploaded models are parsed, converted and run.
# "auto" takes the strongest isolation that works here (bubblewrap, setuid, scrubbed).
MLCP_GATE_SANDBOX = env_str("MLCP_GATE_SANDBOX", "auto")
# A worker refuses to start when only "scrubbed" (same user, no filesystem isolation) works, unless this is set.
MLCP_GATE_SANDBOX_ALLOW_WEAK = env_bool("MLCP_GATE_SANDBOX_ALLOW_WEAK", False)
MLCP_SANDBOX_MEMORY_BYTES = env_int("MLCP_SANDBOX_MEMORY_BYTES", 16 * 1024**3)  # address space; torch maps a lot
MLCP_SANDBOX_CPU_SECONDS = env_int("MLCP_SANDBOX_CPU_SECONDS", 1800)
MLCP_SANDBOX_WALL_SECONDS = env_int("MLCP_SANDBOX_WALL_SECONDS", 840)  # under the gate task's 900 s soft limit
MLCP_SANDBOX_FILE_SIZE_BYTES = env_int("MLCP_SANDBOX_FILE_SIZE_BYTES", MLCP_MAX_UPLOAD_BYTES)
MLCP_SANDBOX_PROCESSES = env_int("MLCP_SANDBOX_PROCESSES", 4096)  # threads count; onnxruntime starts one per core
MLCP_SANDBOX_RESULT_MAX_BYTES = env_int("MLCP_SANDBOX_RESULT_MAX_BYTES", 4 * 1024**2)
# A gate whose worker died this many times while running it is an error (`worker_crashed`), never redelivered.
MLCP_GATE_MAX_DELIVERIES = env_int("MLCP_GATE_MAX_DELIVERIES", 3)

# Download verification (registry/api/views.py): a Range request trusts a check of the blob's bytes this
# recent, and re-hashes the whole blob otherwise; a full download is hashed as it streams.
MLCP_VERIFY_TRUST_S = env_int("MLCP_VERIFY_TRUST_S", 3600)
# Celery beat re-hashes every stored blob not checked within this interval (`manage.py verifyblobs` by hand).
MLCP_VERIFY_BLOBS_EVERY_S = env_int("MLCP_VERIFY_BLOBS_EVERY_S", 24 * 3600)
# The same sweep removes blobs that no version or golden set references (a failed upload's bytes) once no
# upload has claimed them for this long; it must exceed an upload's time from storing its bytes to its row.
MLCP_ORPHAN_BLOB_GRACE_S = env_int("MLCP_ORPHAN_BLOB_GRACE_S", 3600)

# Governance. The gates every model's policy must keep, whatever an approver sets (quantization stays optional).
MLCP_MINIMUM_GATES = env_list("MLCP_MINIMUM_GATES", ["validation", "golden_set"])
# Four eyes: whoever uploaded a version, or last changed its model's gate policy or default golden set,
# cannot approve it.
MLCP_TWO_PERSON_APPROVAL = env_bool("MLCP_TWO_PERSON_APPROVAL", True)

# Operability. A controller whose last tick started or finished longer ago than this is not acting: the API, UI,
# CLI and `controllerhealth` say so. Above the longest tick (the rollout timeout, 60 s) plus the interval (10 s).
MLCP_CONTROLLER_STALE_S = env_int("MLCP_CONTROLLER_STALE_S", 90)
# Where `runcontroller` says its loop turned, for the pod's liveness probe (`controllerhealth`); empty: nowhere.
# The controller lease (rollouts.lease): its lifetime, renewed every third of it from a thread of its own, and how
# often a standby tries to take it. A leader that stops (SIGTERM) is replaced within the poll, a crashed one
# within the lifetime; a leader that cannot renew stops acting a third of the lifetime before the lease expires.
MLCP_CONTROLLER_LEASE_S = env_int("MLCP_CONTROLLER_LEASE_S", 15)
MLCP_CONTROLLER_LEASE_POLL_S = env_int("MLCP_CONTROLLER_LEASE_POLL_MS", 1000) / 1000
# Analysis rows kept per rollout step besides the decisive ones; older ones are compacted into a summary.
MLCP_ANALYSIS_KEEP_PER_STEP = env_int("MLCP_ANALYSIS_KEEP_PER_STEP", 50)
MLCP_CONTROLLER_HEARTBEAT_FILE = env_str("MLCP_CONTROLLER_HEARTBEAT_FILE", "")
# /metrics: a bearer token Prometheus must send (unset: open, like /healthz), and how long one rendering of the
# database's aggregates is served again, so scrapes from many Prometheus replicas cost the database little.
MLCP_METRICS_TOKEN = env_str("MLCP_METRICS_TOKEN", "")
MLCP_METRICS_CACHE_S = env_int("MLCP_METRICS_CACHE_S", 10)
# Probes and scrapes come over plain HTTP from inside the cluster, whatever SECURE_SSL_REDIRECT says.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
