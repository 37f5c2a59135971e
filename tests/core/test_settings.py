import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _production(env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CONTROLPLANE_"))}
    env.update({"DJANGO_SETTINGS_MODULE": "controlplane.settings.production", **env_extra})
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_a_secret_key():
    result = _production({"DJANGO_ALLOWED_HOSTS": "cp.example.com"})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must be set" in result.stderr


def test_production_reads_secrets_from_files_and_passes_check_deploy(tmp_path):
    from cryptography.fernet import Fernet

    (tmp_path / "key").write_text(secrets.token_urlsafe(50) + "\n")
    (tmp_path / "enc").write_text(Fernet.generate_key().decode())
    result = _production(
        {
            "DJANGO_SECRET_KEY_FILE": str(tmp_path / "key"),
            "CONTROLPLANE_ENCRYPTION_KEYS_FILE": str(tmp_path / "enc"),
            "DJANGO_ALLOWED_HOSTS": "cp.example.com",
        }
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
