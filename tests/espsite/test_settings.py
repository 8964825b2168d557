"""Settings read from the environment: production is secure by default, keys are required."""

import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _production_env(tmp_path) -> dict[str, str]:
    return {
        "DEBUG": "0",
        "SECRET_KEY": "prod-" + Fernet.generate_key().decode() + Fernet.generate_key().decode(),
        "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "esp.example.com",
        "BASE_URL": "https://esp.example.com",
        "VAR_DIR": str(tmp_path),
    }


def test_check_deploy_passes_with_production_environment(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env(tmp_path))
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_check_deploy_warns_when_served_over_plain_http(tmp_path):
    env = {**_production_env(tmp_path), "BASE_URL": "http://esp.example.com"}
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode != 0
    assert "SECURE_SSL_REDIRECT" in result.stderr + result.stdout


def test_missing_secret_key_refuses_to_start(tmp_path):
    env = _production_env(tmp_path)
    del env["SECRET_KEY"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_missing_field_encryption_key_refuses_to_start(tmp_path):
    env = _production_env(tmp_path)
    del env["FIELD_ENCRYPTION_KEY"]
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY is not set" in result.stderr


def test_malformed_field_encryption_key_is_named(tmp_path):
    env = {**_production_env(tmp_path), "FIELD_ENCRYPTION_KEY": "not-a-fernet-key"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY must be" in result.stderr


def test_debug_generates_development_keys_under_var(tmp_path):
    env = {"DEBUG": "1", "VAR_DIR": str(tmp_path)}
    first = _manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env=env
    )
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "secret_key").exists()
    assert (tmp_path / "field_encryption_key").exists()
    Fernet((tmp_path / "field_encryption_key").read_text().strip())
    again = _manage(
        "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env=env
    )
    assert first.stdout.strip()
    assert first.stdout == again.stdout


def test_sqlite_is_refused(tmp_path):
    env = {**_production_env(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "DATABASE_URL must point at PostgreSQL" in result.stderr


def test_defaults_point_at_local_services(tmp_path):
    result = _manage(
        "shell",
        "-c",
        "from django.conf import settings as s; "
        "d = s.DATABASES['default']; "
        "print(d['HOST'], d['PORT'], s.REDIS_URL, s.CELERY_BROKER_URL, s.MEDIA_ROOT)",
        env=_production_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    host, port, redis_url, broker, media = result.stdout.strip().splitlines()[-1].split()
    assert (host, port) == ("127.0.0.1", "5432")
    assert redis_url == broker == "redis://127.0.0.1:6379/0"
    assert media == str(tmp_path / "media")


def test_error_reports_hide_urls_with_credentials(settings, rf):
    from django.views.debug import get_default_exception_reporter_filter

    settings.REDIS_URL = "redis://:hunter2@redis.internal:6379/0"
    safe = get_default_exception_reporter_filter().get_safe_settings()
    assert "hunter2" not in str(safe["REDIS_URL"])
    assert "hunter2" not in str(safe)
