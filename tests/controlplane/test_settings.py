"""Settings come from the environment; production variables make `check --deploy` clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ROOT = Path(__file__).resolve().parents[2]


def _manage(*args, **env):
    # Not the test process's own development switches: the command must see a production environment.
    base = {k: v for k, v in os.environ.items()
            if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True)


@pytest.fixture
def production_env(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(key)
    return {"SECRET_KEY": "x7" * 32 + "-production-secret", "ALLOWED_HOSTS": "mlcp.example.com",
            "MLCP_SIGNING_KEY_FILE": str(key_file), "DATABASE_URL": "postgres://mlcp@db.invalid:5432/mlcp",
            "SECURE_SSL_REDIRECT": "true", "SECURE_HSTS_SECONDS": "31536000",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true", "SECURE_HSTS_PRELOAD": "true", "MLCP_DATA_DIR": str(tmp_path)}


def test_check_deploy_is_clean_with_production_variables(production_env):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **production_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_flags_the_development_defaults(tmp_path):
    result = _manage("check", "--deploy", "--fail-level", "WARNING", MLCP_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    for check_id in ("mlcp.W001", "mlcp.W002", "security.W009"):
        assert check_id in result.stderr


def test_a_malformed_boolean_fails_loudly(tmp_path):
    result = _manage("check", DEBUG="maybe", MLCP_DATA_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_secrets_can_come_from_files(tmp_path, production_env):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file-" + "y" * 50)
    env = {**production_env, "SECRET_KEY_FILE": str(secret)}
    env.pop("SECRET_KEY")
    result = _manage("shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", **env)
    assert result.stdout.strip().splitlines()[-1] == "from-a-file-" + "y" * 50
