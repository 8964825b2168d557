"""Settings of the whole platform, every knob read from the environment.

With nothing set, the platform uses the local PostgreSQL and Redis on 127.0.0.1 and keeps
files under var/. The README lists every variable.
"""

import hashlib
import ipaddress
import secrets
import socket
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from espsite.env import env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR") or BASE_DIR / "var")

DEBUG = env_bool("DEBUG", False)


def _development_secret(name: str, make) -> str:
    """A key kept under var/ so that a developer's sessions and ciphertexts survive restarts."""
    path = VAR_DIR / name.lower()
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = make()
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _required_secret(name: str, make) -> str:
    value = env_str(name)
    if value:
        return value
    if DEBUG:
        return _development_secret(name, make)
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment (DEBUG=0 never invents one); "
        "see the README's table of environment variables."
    )


SECRET_KEY = _required_secret("SECRET_KEY", lambda: secrets.token_urlsafe(50))
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS")

# Fernet keys for secrets stored in the database. Comma-separated: the first encrypts,
# all decrypt, so a key can be rotated without losing what the old one sealed.
FIELD_ENCRYPTION_KEYS = [
    key.strip()
    for key in _required_secret(
        "FIELD_ENCRYPTION_KEY", lambda: Fernet.generate_key().decode()
    ).split(",")
    if key.strip()
]
for _key in FIELD_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY must be one or more comma-separated Fernet keys "
            "(32 url-safe base64-encoded bytes); generate one with "
            '`python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"`.'
        ) from None

BASE_URL = env_str("BASE_URL", "http://127.0.0.1:8000").rstrip("/")
_base = urlsplit(BASE_URL)
if _base.scheme not in {"http", "https"} or not _base.hostname:
    raise ImproperlyConfigured(f"BASE_URL must be an absolute http(s) URL, not {BASE_URL!r}.")
USES_HTTPS = _base.scheme == "https"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", _base.hostname])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [f"{_base.scheme}://{_base.netloc}"])

# Proxies (addresses or networks) whose X-Forwarded-For header names the client.
TRUSTED_PROXIES = [ipaddress.ip_network(item, strict=False) for item in env_list("TRUSTED_PROXIES")]

INSTALLED_APPS = [
    "espsite.apps.PlatformAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.forms",
    "django.contrib.postgres",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_htmx",
    "template_partials",
    "csp",
    "anymail",
    "espsite.apps.EspsiteConfig",
    "accounts",
    "contacts",
    "compliance",
    "campaigns",
    "sending",
    "tracking",
]

MIDDLEWARE = [
    # Open pixel and click redirects: answered before sessions, CSRF and auth.
    "tracking.middleware.TrackingMiddleware",
    "espsite.middleware.HealthzMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "accounts.middleware.ClientIpMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.StaffTwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
]

ROOT_URLCONF = "espsite.urls"
WSGI_APPLICATION = "espsite.wsgi.application"
ASGI_APPLICATION = "espsite.asgi.application"

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
                "csp.context_processors.nonce",
                "accounts.context_processors.shell",
            ],
        },
    },
]

FORM_RENDERER = "espsite.forms.FormRenderer"

# PostgreSQL everywhere: demo, tests and production share one code path.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/esp"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgres://…).")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "esp"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = 60 * 60 * 3

# Sign-in throttling: failures allowed per window, per account and per client IP.
LOGIN_FAILURES_PER_ACCOUNT = env_int("LOGIN_FAILURES_PER_ACCOUNT", 5)
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 20)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)

# Mail anyone can make us send: password resets per address and per client, invitations
# per workspace (fewer while a workspace awaits review).
PASSWORD_RESETS_PER_ADDRESS_PER_HOUR = env_int("PASSWORD_RESETS_PER_ADDRESS_PER_HOUR", 3)
PASSWORD_RESETS_PER_IP_PER_HOUR = env_int("PASSWORD_RESETS_PER_IP_PER_HOUR", 20)
INVITATIONS_PER_WORKSPACE_PER_DAY = env_int("INVITATIONS_PER_WORKSPACE_PER_DAY", 100)
INVITATIONS_PER_PENDING_WORKSPACE_PER_DAY = env_int("INVITATIONS_PER_PENDING_WORKSPACE_PER_DAY", 10)

OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "ESP")
INVITATION_MAX_AGE_SECONDS = env_int("INVITATION_MAX_AGE_SECONDS", 7 * 24 * 3600)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Uploaded files are private: no MEDIA_URL is served. Downloads go through views that
# check the workspace, or through signed, expiring links.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or VAR_DIR / "media")
STORAGES = {
    "default": {
        "BACKEND": env_str("FILE_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage"),
        "OPTIONS": {"location": str(MEDIA_ROOT)} if not env_str("FILE_STORAGE_BACKEND") else {},
    },
    "staticfiles": {
        "BACKEND": env_str(
            "STATIC_STORAGE_BACKEND",
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage",
        )
    },
}

# System mail (password resets, invitations). With nothing set it goes to the local sink
# that `make run` starts on loopback, so nothing leaves the machine.
# System mail (confirmations, invitations, resets, test sends) leaves through the platform's
# transports, DKIM-signed for verified domains (sending/backends.py).
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "sending.backends.PlatformEmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 2525)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 15)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"ESP <no-reply@{_base.hostname}>")
SERVER_EMAIL = env_str("SERVER_EMAIL", DEFAULT_FROM_EMAIL)
ADMINS = [("Operators", address) for address in env_list("OPERATOR_EMAILS")]
SMTP_SINK_PORT = env_int("SMTP_SINK_PORT", 2525)

# Celery: JSON only; acks_late with reject-on-worker-lost, so every task is idempotent and
# PostgreSQL stays the ledger. The visibility timeout outlives the hard time limit.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_HARD_TIME_LIMIT = env_int("CELERY_TASK_HARD_TIME_LIMIT", 15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 14 * 60)
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 2 * 3600)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
WORKER_HEARTBEAT_MAX_AGE_SECONDS = env_int("WORKER_HEARTBEAT_MAX_AGE_SECONDS", 60)

# Security. Production (an https BASE_URL) gets HSTS, secure cookies and the SSL
# redirect by default; each can be overridden.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", USES_HTTPS)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", USES_HTTPS)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", USES_HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if USES_HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", USES_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", USES_HTTPS)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if TRUSTED_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy: no inline script or style, nothing from other origins.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Error reports hide settings that may hold credentials (URLs with passwords, keys).
DEFAULT_EXCEPTION_REPORTER_FILTER = "espsite.errors.SecretsHidingReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "mail.log": {"level": "WARNING"},  # aiosmtpd logs every SMTP command at INFO
    },
}

# Signed links to private files (exports) stop working after this long.
DOWNLOAD_LINK_MAX_AGE_SECONDS = env_int("DOWNLOAD_LINK_MAX_AGE_SECONDS", 7 * 24 * 3600)

# Key of the hashes that identify suppressed addresses (erased people included). Set it
# explicitly in production and keep it: by default it is derived from SECRET_KEY, and the
# keys derived from SECRET_KEY_FALLBACKS keep matching older entries after a rotation.
SUPPRESSION_HASH_KEYS = (
    [env_str("SUPPRESSION_HASH_KEY")]
    if env_str("SUPPRESSION_HASH_KEY")
    else [
        hashlib.sha256(f"suppression:{key}".encode()).hexdigest()
        for key in [SECRET_KEY, *SECRET_KEY_FALLBACKS]
    ]
)

# Sending domains and IPs: DNS checks (DKIM, SPF, DMARC, return-path MX, tracking CNAME),
# DNSBL and PTR monitoring. DNS_RESOLVERS empty means the system's resolvers. Periodic
# checks stay off unless DNS_CHECKS_ENABLED, so `make run` queries no DNS off the machine.
DNS_RESOLVERS = env_list("DNS_RESOLVERS")
DNS_TIMEOUT_SECONDS = float(env_str("DNS_TIMEOUT_SECONDS") or 3)
DNS_RETRIES = env_int("DNS_RETRIES", 2)
DNS_CHECKS_ENABLED = env_bool("DNS_CHECKS_ENABLED", False)
# The loopback DNS sandbox that `make run` starts and points DNS_RESOLVERS at.
DNS_SANDBOX_PORT = env_int("DNS_SANDBOX_PORT", 5300)
DOMAIN_CHECK_INTERVAL_SECONDS = env_int("DOMAIN_CHECK_INTERVAL_SECONDS", 6 * 3600)
SENDING_SPF_DOMAIN = env_str("SENDING_SPF_DOMAIN", f"_spf.{_base.hostname}")
SENDING_INBOUND_HOST = env_str("SENDING_INBOUND_HOST", f"inbound.{_base.hostname}")
SENDING_TRACKING_HOST = env_str("SENDING_TRACKING_HOST", _base.hostname)
SENDING_RETURN_PATH_SUBDOMAIN = env_str("SENDING_RETURN_PATH_SUBDOMAIN", "bounces")
SENDING_TRACKING_SUBDOMAIN = env_str("SENDING_TRACKING_SUBDOMAIN", "links")
# This host's name as sending IPs' bound_host gives it; its send workers take "send.<name>".
SENDING_HOST_NAME = env_str("SENDING_HOST_NAME", socket.gethostname())

# How campaign mail leaves (an IP pool may choose another): "smtp" relays through a
# smarthost (by default the local sink that `make run` starts), "mx" delivers to each
# recipient's MX, "anymail" hands over to an ESP API through django-anymail.
SENDING_TRANSPORT = env_str("SENDING_TRANSPORT", "smtp")
SENDING_SMTP_HOST = env_str("SENDING_SMTP_HOST", "127.0.0.1")
SENDING_SMTP_PORT = env_int("SENDING_SMTP_PORT", 2525)
SENDING_SMTP_USERNAME = env_str("SENDING_SMTP_USERNAME")
SENDING_SMTP_PASSWORD = env_str("SENDING_SMTP_PASSWORD")
SENDING_SMTP_SECURITY = env_str("SENDING_SMTP_SECURITY", "none")  # none | starttls | tls
SENDING_SMTP_TIMEOUT_SECONDS = env_int("SENDING_SMTP_TIMEOUT_SECONDS", 30)
SENDING_SMTP_CONNECTIONS = env_int("SENDING_SMTP_CONNECTIONS", 4)
# A PEM file the smarthost's certificate must chain to (blank: the system's trust store).
SENDING_SMTP_CA_FILE = env_str("SENDING_SMTP_CA_FILE")
# Direct-to-MX: off the loopback network only when this is turned off on purpose.
SENDING_MX_LOOPBACK_ONLY = env_bool("SENDING_MX_LOOPBACK_ONLY", True)
SENDING_MX_PORT = env_int("SENDING_MX_PORT", 25)
SENDING_MX_CONCURRENCY = env_int("SENDING_MX_CONCURRENCY", 100)
SENDING_MX_TIMEOUT_SECONDS = env_int("SENDING_MX_TIMEOUT_SECONDS", 60)
SENDING_ANYMAIL_BACKEND = env_str("SENDING_ANYMAIL_BACKEND")
# The sender id that closes every Feedback-ID header (Gmail's complaint-rate grouping).
SENDING_FEEDBACK_ID_SENDER = env_str("SENDING_FEEDBACK_ID_SENDER", "esp")
DMARC_REPORT_ADDRESS = env_str("DMARC_REPORT_ADDRESS")

# Feedback intake. The inbound listener (`manage.py mailin`) takes mail for the return-path
# hosts of sending domains, for MAILIN_FBL_ADDRESSES (the address mailbox providers'
# feedback loops send ARF complaints to) and for the List-Unsubscribe `mailto:` addresses.
MAILIN_HOST = env_str("MAILIN_HOST", "127.0.0.1")
MAILIN_PORT = env_int("MAILIN_PORT", 2526)
MAILIN_MAX_MESSAGE_BYTES = env_int("MAILIN_MAX_MESSAGE_BYTES", 10 * 1024 * 1024)
MAILIN_MAX_CONNECTIONS = env_int("MAILIN_MAX_CONNECTIONS", 100)
# One client address may hold at most this many of them; and no session lasts longer than
# MAILIN_SESSION_SECONDS (a client kept alive by NOOPs is told 421 and disconnected).
MAILIN_MAX_CONNECTIONS_PER_PEER = env_int("MAILIN_MAX_CONNECTIONS_PER_PEER", 10)
MAILIN_SESSION_SECONDS = env_int("MAILIN_SESSION_SECONDS", 600)
MAILIN_FBL_ADDRESSES = env_list("MAILIN_FBL_ADDRESSES") or [f"fbl@{SENDING_INBOUND_HOST}"]
# Received messages not processed after this long are handed to a task again (a lost
# enqueue); raw inbound mail is deleted after INBOUND_RETENTION_DAYS.
INBOUND_SWEEP_SECONDS = env_int("INBOUND_SWEEP_SECONDS", 60)
INBOUND_RETENTION_DAYS = env_int("INBOUND_RETENTION_DAYS", 30)

# Tracking: open and click events live in monthly partitions, created this many months
# ahead and dropped once older than the retention (reports keep their counters).
TRACKING_PARTITIONS_AHEAD = env_int("TRACKING_PARTITIONS_AHEAD", 2)
TRACKING_EVENT_RETENTION_DAYS = env_int("TRACKING_EVENT_RETENTION_DAYS", 400)
# The open and click endpoints answer once their hit is in the node's spool (a local,
# persistent directory shared by the node's web processes: tracking/spool.py), which each
# process's flusher buffers in PostgreSQL this often; spools of processes that died are
# adopted this often; a thread's spool file is replaced once this large. The verified
# tracking hosts of sending domains are re-read every TRACKING_HOSTS_CACHE_SECONDS.
TRACKING_SPOOL_DIR = Path(env_str("TRACKING_SPOOL_DIR") or VAR_DIR / "tracking-spool")
TRACKING_SPOOL_FLUSH_SECONDS = env_float("TRACKING_SPOOL_FLUSH_SECONDS", 0.05)
TRACKING_SPOOL_ADOPT_SECONDS = env_float("TRACKING_SPOOL_ADOPT_SECONDS", 5.0)
TRACKING_SPOOL_SEGMENT_BYTES = env_int("TRACKING_SPOOL_SEGMENT_BYTES", 8 * 1024 * 1024)
TRACKING_HOSTS_CACHE_SECONDS = env_float("TRACKING_HOSTS_CACHE_SECONDS", 30.0)
# Buffered hits stored as events per transaction by the drain (tracking/ingest.py).
TRACKING_DRAIN_BATCH = env_int("TRACKING_DRAIN_BATCH", 5000)
# Opens and clicks sooner than these after sending are machines'.
TRACKING_MACHINE_OPEN_SECONDS = env_float("TRACKING_MACHINE_OPEN_SECONDS", 2.0)
TRACKING_MACHINE_CLICK_SECONDS = env_float("TRACKING_MACHINE_CLICK_SECONDS", 10.0)
# An address that soft-bounces this many times within this many days is suppressed.
FEEDBACK_SOFT_BOUNCE_LIMIT = env_int("FEEDBACK_SOFT_BOUNCE_LIMIT", 3)
FEEDBACK_SOFT_BOUNCE_DAYS = env_int("FEEDBACK_SOFT_BOUNCE_DAYS", 14)
# ESP webhooks (django-anymail): "user:password" for the basic authentication anymail
# requires on its webhook URLs; each ESP's own signing key goes into ANYMAIL as anymail
# documents (e.g. ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY).
ANYMAIL = {
    "WEBHOOK_SECRET": env_str("ANYMAIL_WEBHOOK_SECRET") or None,
    **{
        name: env_str(f"ANYMAIL_{name}")
        for name in (
            "MAILGUN_WEBHOOK_SIGNING_KEY",
            "POSTMARK_SERVER_TOKEN",
            "SENDGRID_API_KEY",
            "MAILGUN_API_KEY",
        )
        if env_str(f"ANYMAIL_{name}")
    },
}
DKIM_ROTATION_GRACE_DAYS = env_int("DKIM_ROTATION_GRACE_DAYS", 7)

# Public signup forms: submissions allowed per client IP per window (against list bombing),
# the minimum gap between two confirmation mails to one address (platform-wide), and the
# lifetime of confirmation links.
SIGNUP_SUBMISSIONS_PER_IP = env_int("SIGNUP_SUBMISSIONS_PER_IP", 10)
SIGNUP_SUBMISSION_WINDOW_SECONDS = env_int("SIGNUP_SUBMISSION_WINDOW_SECONDS", 10 * 60)
SIGNUP_CONFIRMATION_INTERVAL_SECONDS = env_int("SIGNUP_CONFIRMATION_INTERVAL_SECONDS", 24 * 3600)
SIGNUP_CONFIRMATION_MAX_AGE_SECONDS = env_int("SIGNUP_CONFIRMATION_MAX_AGE_SECONDS", 7 * 24 * 3600)

# Contact imports: uploads above this size are refused before they are read.
CONTACT_IMPORT_MAX_BYTES = env_int("CONTACT_IMPORT_MAX_BYTES", 512 * 1024 * 1024)

# GDPR: personal fields of rows older than this many months are dropped (a daily task);
# a person's erasure confirmation link expires after GDPR_CONFIRMATION_MAX_AGE_SECONDS.
RETENTION_MONTHS = env_int("RETENTION_MONTHS", 24)
GDPR_CONFIRMATION_MAX_AGE_SECONDS = env_int("GDPR_CONFIRMATION_MAX_AGE_SECONDS", 48 * 3600)

# Campaign rendering: templates and rendered messages larger than this are refused.
CAMPAIGN_RENDER_MAX_BYTES = env_int("CAMPAIGN_RENDER_MAX_BYTES", 2 * 1024 * 1024)

# The media library: uploads are refused past these before any pixel is decoded.
MEDIA_IMAGE_MAX_BYTES = env_int("MEDIA_IMAGE_MAX_BYTES", 10 * 1024 * 1024)
MEDIA_IMAGE_MAX_PIXELS = env_int("MEDIA_IMAGE_MAX_PIXELS", 40_000_000)
MEDIA_IMAGE_MAX_SIDE = env_int("MEDIA_IMAGE_MAX_SIDE", 12_000)
MEDIA_IMAGE_MAX_COUNT = env_int("MEDIA_IMAGE_MAX_COUNT", 5000)

# Delivery pipeline: a claim is a lease; an expired lease returns never-attempted rows to
# the queue and turns in-flight ones into "unknown" (retried only when DELIVERY_RETRY_UNKNOWN).
DELIVERY_LEASE_SECONDS = env_int("DELIVERY_LEASE_SECONDS", 300)
DELIVERY_SWEEP_SECONDS = env_int("DELIVERY_SWEEP_SECONDS", 60)
DELIVERY_RETRY_UNKNOWN = env_bool("DELIVERY_RETRY_UNKNOWN", False)
DELIVERY_MAX_LIFETIME_SECONDS = env_int("DELIVERY_MAX_LIFETIME_SECONDS", 3 * 24 * 3600)
DELIVERY_FIRST_RETRY_SECONDS = env_int("DELIVERY_FIRST_RETRY_SECONDS", 5 * 60)
# Work distribution: each send task claims chunks of SENDING_CHUNK_SIZE for about
# SENDING_TASK_SECONDS, then hands over to a fresh task; SENDING_FANOUT chains run per campaign.
SENDING_CHUNK_SIZE = env_int("SENDING_CHUNK_SIZE", 200)
SENDING_TASK_SECONDS = env_float("SENDING_TASK_SECONDS", 1.0)
SENDING_FANOUT = env_int("SENDING_FANOUT", 4)

# Traffic shaping. Rates are counted in Redis over windows of THROTTLE_WINDOW_SECONDS;
# a concurrency slot is a lease that lapses after THROTTLE_SLOT_SECONDS unless renewed.
THROTTLE_WINDOW_SECONDS = env_float("THROTTLE_WINDOW_SECONDS", 60.0)
THROTTLE_SLOT_SECONDS = env_float("THROTTLE_SLOT_SECONDS", 120.0)
# Adaptive back-off: a provider's rate is multiplied by this on a rate-limit reply (421,
# 4.7.x) and recovers by THROTTLE_RECOVERY_STEP of the full rate per clean window.
THROTTLE_BACKOFF_FACTOR = env_float("THROTTLE_BACKOFF_FACTOR", 0.5)
THROTTLE_RECOVERY_STEP = env_float("THROTTLE_RECOVERY_STEP", 0.1)
THROTTLE_MIN_FACTOR = env_float("THROTTLE_MIN_FACTOR", 0.05)
# Recipient domains' providers are looked up in DNS (MX) when not in the built-in table,
# and looked up again after this long.
PROVIDER_MX_MAX_AGE_SECONDS = env_int("PROVIDER_MX_MAX_AGE_SECONDS", 30 * 24 * 3600)
# Warm-up: the ramp holds (does not advance) while the previous day's rates for a
# provider are above these (percent).
WARMUP_HOLD_DEFERRAL_PERCENT = env_float("WARMUP_HOLD_DEFERRAL_PERCENT", 20.0)
WARMUP_HOLD_BOUNCE_PERCENT = env_float("WARMUP_HOLD_BOUNCE_PERCENT", 5.0)
WARMUP_HOLD_COMPLAINT_PERCENT = env_float("WARMUP_HOLD_COMPLAINT_PERCENT", 0.1)
# Recipients who opened or clicked within this many days go first while warming.
WARMUP_ENGAGED_DAYS = env_int("WARMUP_ENGAGED_DAYS", 90)
# A new sending domain (not marked warmed up) follows the default schedule per provider
# too, whatever IPs it sends from.
WARMUP_NEW_DOMAINS = env_bool("WARMUP_NEW_DOMAINS", True)
# Batch circuit breaker: the first batch's size, how much each next batch grows, and the
# platform's thresholds (percent of the batch); workspaces cannot raise them.
BREAKER_FIRST_BATCH = env_int("BREAKER_FIRST_BATCH", 500)
BREAKER_GROWTH = env_float("BREAKER_GROWTH", 4.0)
# Fewer handed-over deliveries than this in a batch are judged together with the rest.
BREAKER_MIN_SAMPLE = env_int("BREAKER_MIN_SAMPLE", 100)
BREAKER_HARD_BOUNCE_PERCENT = env_float("BREAKER_HARD_BOUNCE_PERCENT", 5.0)
BREAKER_COMPLAINT_PERCENT = env_float("BREAKER_COMPLAINT_PERCENT", 0.1)
BREAKER_DEFERRAL_PERCENT = env_float("BREAKER_DEFERRAL_PERCENT", 30.0)
# Quotas of a new workspace until an operator raises them; the 7-day complaint rate
# (percent) at which a workspace's sending is suspended automatically.
SENDING_NEW_WORKSPACE_DAILY_QUOTA = env_int("SENDING_NEW_WORKSPACE_DAILY_QUOTA", 1000)
SENDING_NEW_WORKSPACE_HOURLY_QUOTA = env_int("SENDING_NEW_WORKSPACE_HOURLY_QUOTA", 200)
SENDING_COMPLAINT_SUSPEND_PERCENT = env_float("SENDING_COMPLAINT_SUSPEND_PERCENT", 0.3)
# How long the kill switches and policies are cached by a sending worker (seconds).
SENDING_POLICY_CACHE_SECONDS = env_float("SENDING_POLICY_CACHE_SECONDS", 2.0)

# Models that belong to no workspace; every other model of the project's apps must inherit
# accounts.models.WorkspaceOwned (checked at start-up).
GLOBAL_MODELS = [
    "accounts.User",
    "accounts.Workspace",
    "accounts.AuditEntry",
    "sending.IpPool",
    "sending.SendingIp",
    "sending.DnsblZone",
    "sending.DnsblListing",
    "sending.InboundMessage",
    "sending.WarmupSchedule",
    "sending.ProviderLimit",
    "sending.RecipientDomain",
    "sending.PlatformSwitch",  # its workspace is known only once a delivery matches
    "contacts.Suppression",  # per workspace, or platform-wide when workspace is empty
    "tracking.PendingHit",  # its workspace is known once the drain finds its delivery
]
