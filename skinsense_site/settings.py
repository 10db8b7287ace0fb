"""SkinSense settings: one module, every knob read from the environment.

Defaults are for development (SQLite, eager Celery, local private media). With DEBUG off there is
no default for secrets: a missing SECRET_KEY is an error, not a silent insecure fallback.
docs/configuration.md has a table of every variable.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)
VAR_DIR = Path(env.str("SKINSENSE_VAR_DIR", default=str(BASE_DIR / "var")))

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-change-me-" + "x" * 20)
else:
    SECRET_KEY = env.str("SECRET_KEY")  # no default: refuses to start without one
    if SECRET_KEY.startswith("dev-only"):
        raise ImproperlyConfigured("SECRET_KEY must be set to a real secret when DEBUG is off")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

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
    "drf_spectacular_sidecar",
    "axes",
    "diagnosis",
    "ml",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Django's, except that a database outage leaves the session alone (see its docstring).
    "diagnosis.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Dates in the browser's time zone (cookie "tz"; the default zone without one).
    "diagnosis.middleware.TimeZoneMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "diagnosis.audit.AuditContextMiddleware",
    # Turns a database outage into 503 + Retry-After (innermost: it sees the view's exception).
    "diagnosis.middleware.DatabaseUnavailableMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "skinsense_site.urls"
WSGI_APPLICATION = "skinsense_site.wsgi.application"

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
                "diagnosis.context_processors.roles",
            ],
        },
    },
]

if "DATABASE_URL" not in env:
    VAR_DIR.mkdir(parents=True, exist_ok=True)  # the embedded SQLite database lives here
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# A persistent connection that died with the database server is replaced, not reused.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A stopped database answers 503 within seconds instead of hanging every request.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env.int("DATABASE_CONNECT_TIMEOUT", default=3)
    )
if env.str("TEST_DATABASE_NAME", default=""):  # lets concurrent test runs share one server
    DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_DATABASE_NAME")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Shared by all processes when it points at Redis (throttling, idempotency): e.g.
# CACHE_URL=rediscache://127.0.0.1:6379/1. The default is per process.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://skinsense")}

PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# django-axes first: it refuses a locked-out username+address before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ml:dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
# In development whitenoise serves straight from the source folders (no collectstatic needed).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# Clinical images are private: stored under PRIVATE_MEDIA_ROOT, never under a public URL, and
# served only by views that check clinic membership. There is deliberately no MEDIA_URL route.
PRIVATE_MEDIA_ROOT = Path(env.str("PRIVATE_MEDIA_ROOT", default=str(VAR_DIR / "private")))
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(PRIVATE_MEDIA_ROOT), "base_url": None},
    },
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        ),
    },
}
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750

# Upload limits (bytes, pixels). A file over either limit is refused with a message.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=20 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env.int("UPLOAD_MAX_PIXELS", default=50_000_000)
# Let Django accept the body; our validator gives the clear message for oversize files.
DATA_UPLOAD_MAX_MEMORY_SIZE = UPLOAD_MAX_BYTES + 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# Model registry and inference
MODEL_ROOT = Path(env.str("MODEL_ROOT", default=str(PRIVATE_MEDIA_ROOT / "models")))
# The model shipped in the repository (trained on HAM10000; its manifest beside it, .json):
# `ensure_default_model` registers and activates it when no model is active. "" = none (DEMO).
DEFAULT_MODEL_PATH = env.str(
    "DEFAULT_MODEL_PATH", default=str(BASE_DIR / "ml" / "weights" / "ham10000-resnet18.pt")
)
INFERENCE_DEVICE = env.str("INFERENCE_DEVICE", default="auto")  # auto | cpu | cuda | cuda:N
INFERENCE_THREADS = env.int("INFERENCE_THREADS", default=0)  # 0 = torch's default
# Grad-CAM heatmap of the malignant head with every prediction (about one more forward+backward).
PREDICTION_HEATMAPS = env.bool("PREDICTION_HEATMAPS", default=True)
# The serving backend: torch (PyTorch eager), onnx (ONNX Runtime fp32, exported from the
# registered checkpoint and cached by its hash) or onnx-int8 (the int8 model, when
# `manage.py export_onnx --int8` found its balanced accuracy within 1 point of fp32).
INFERENCE_BACKEND = env.str("INFERENCE_BACKEND", default="torch")
if INFERENCE_BACKEND not in ("torch", "onnx", "onnx-int8"):
    raise ImproperlyConfigured("INFERENCE_BACKEND must be torch, onnx or onnx-int8")
# Micro-batching: a worker that takes a case also runs up to this many waiting cases in the
# same forward pass (1 = one at a time). A lone case never waits for company.
INFERENCE_BATCH_MAX = env.int("INFERENCE_BATCH_MAX", default=8)
# Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale (never below the model's resize size).
INFERENCE_JPEG_DRAFT = env.bool("INFERENCE_JPEG_DRAFT", default=True)

# Celery: no broker URL → eager mode, the whole flow runs in one process (embedded default).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=not CELERY_BROKER_URL)
if not CELERY_BROKER_URL:
    CELERY_BROKER_URL = "memory://"  # never used for publishing: tasks run eagerly
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A prefork child loads the model before it reports "up" (ml.tasks: worker_process_init). On a
# busy machine that takes longer than Celery's 4 s default, and the parent then kills the child
# and starts another, for ever: give it a minute.
CELERY_WORKER_PROC_ALIVE_TIMEOUT = env.float("CELERY_WORKER_PROC_ALIVE_TIMEOUT", default=60.0)
CELERY_TASK_ROUTES = {
    "ml.tasks.predict_case_task": {"queue": "inference"},
    "ml.tasks.heatmap_task": {"queue": "heatmaps"},
    "diagnosis.tasks.deliver_webhook_task": {"queue": "default"},
    "ml.tasks.review_email_task": {"queue": "default"},
}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A message not acknowledged within this time is redelivered (acks_late + a dead worker).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    # Publishing while the broker is down fails within ~0.3 s (two quick retries), so an upload
    # never hangs: the case stays queued and the sweeper below sends it again.
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
}
if env.str("CELERY_KEY_PREFIX", default=""):  # several deployments (or test runs) on one Redis
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env.str("CELERY_KEY_PREFIX")
# A case whose prediction was started this many times without finishing is marked failed.
PREDICT_MAX_ATTEMPTS = env.int("PREDICT_MAX_ATTEMPTS", default=4)
# The worker's time limits per task (s). Only workers apply them (skinsense_site/celery.py), so
# a sender's settings never travel in its messages.
PREDICT_SOFT_TIME_LIMIT = env.int("PREDICT_SOFT_TIME_LIMIT", default=120)
PREDICT_TIME_LIMIT = env.int("PREDICT_TIME_LIMIT", default=180)
CELERY_BEAT_SCHEDULE = {
    "requeue-stuck-cases": {
        "task": "ml.tasks.requeue_stuck_cases_task",
        "schedule": env.int("REQUEUE_INTERVAL_SECONDS", default=60),
    },
    "resend-pending-webhooks": {
        "task": "diagnosis.tasks.resend_pending_webhooks_task",
        "schedule": 300,
    },
}
# A case queued longer than this without a prediction is re-enqueued by the beat job.
CASE_REQUEUE_AFTER_SECONDS = env.int("CASE_REQUEUE_AFTER_SECONDS", default=300)

# The case page polls while a prediction is pending.
CASE_POLL_INTERVAL_MS = env.int("CASE_POLL_INTERVAL_MS", default=1500)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "diagnosis.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["diagnosis.api.throttling.ScopedRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "uploads": env.str("THROTTLE_UPLOADS", default="120/min"),
        "token": env.str("THROTTLE_TOKEN", default="10/min"),
    },
    "DEFAULT_FILTER_BACKENDS": [
        "diagnosis.api.filters.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "diagnosis.api.schema.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    # A database outage answers 503 + Retry-After here too (JSON, like every API error).
    "EXCEPTION_HANDLER": "diagnosis.api.exceptions.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SkinSense API",
    "DESCRIPTION": (
        "Clinical records and asynchronous lesion-image predictions for dermatology clinics. "
        "Predictions are decision support, not a diagnosis."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI served from our own static files: clinics run behind firewalls, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "WebhookEventEnum": "diagnosis.models.WebhookEvent",
        "CaseStatusEnum": "diagnosis.models.CaseStatus",
    },
}

EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    vars().update(env.email_url("EMAIL_URL"))
# The address users reach the site at: the links in e-mail notifications.
SITE_URL = env.str("SITE_URL", default="http://localhost:8000").rstrip("/")
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="SkinSense <noreply@localhost>")

# Security. Production values switch on when DEBUG is off; each can be overridden.
# Sessions end after SESSION_COOKIE_AGE seconds without a request (every request renews them).
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = env.bool("SESSION_EXPIRE_AT_BROWSER_CLOSE", default=False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy (django-csp): our own scripts and styles only, nothing inline.
# Images may be data: (the admin's calibration plot) or blob: (previews of a file being picked).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# Login throttling (django-axes): after AXES_FAILURE_LIMIT failed logins for one username from one
# address, that pair is locked out for AXES_COOLOFF_MINUTES (web login, admin and API token alike).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "diagnosis.lockout.lockout_response"  # 429 page + Retry-After
AXES_CLIENT_IP_CALLABLE = "diagnosis.audit.client_ip"  # the audit trail's address, proxy-aware
AXES_USERNAME_CALLABLE = "diagnosis.lockout.attempted_username"  # cut to 150 characters
AXES_DISABLE_ACCESS_LOG = True  # successful logins and logouts are in the audit trail already
# Behind a reverse proxy: take the client address for the audit trail from X-Forwarded-For.
USE_X_FORWARDED_FOR = env.bool("USE_X_FORWARDED_FOR", default=False)
if env.bool("USE_X_FORWARDED_PROTO", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Webhooks: production accepts only https URLs on public addresses.
WEBHOOKS_ALLOW_HTTP = env.bool("WEBHOOKS_ALLOW_HTTP", default=DEBUG)
WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = env.bool("WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", default=DEBUG)
WEBHOOK_TIMEOUT_SECONDS = env.int("WEBHOOK_TIMEOUT_SECONDS", default=10)

# Demo fixtures (seed_demo refuses to run with DEBUG off).
DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="skinsense-demo")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Failed logins and lockouts (usernames masked); successful logins are in the audit trail.
        "axes": {"level": "WARNING"},
    },
}
