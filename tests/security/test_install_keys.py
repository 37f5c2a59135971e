"""The demo's (local settings') secret and encryption keys are random per install, under var/."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRINT = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "from apps.core.fields import encrypt, decrypt; c = encrypt('hunter2'); "
    "print(json.dumps({'secret': s.SECRET_KEY, 'keys': s.FIELD_ENCRYPTION_KEYS, "
    "'roundtrip': decrypt(c)}))"
)


def _settings_of(var_dir: Path) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SECRET_KEY", "CONTROLPLANE_ENCRYPTION_KEYS")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="controlplane.settings.local", CONTROLPLANE_VAR_DIR=str(var_dir)
    )
    out = subprocess.run(
        [sys.executable, "-c", PRINT], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_keys_are_random_per_install_and_kept(tmp_path):
    first = _settings_of(tmp_path / "a")
    again = _settings_of(tmp_path / "a")
    other = _settings_of(tmp_path / "b")
    assert first == again  # kept: the same install decrypts what it stored
    assert first["roundtrip"] == "hunter2"
    assert first["secret"] != other["secret"] and first["keys"] != other["keys"]
    for name in ("secret_key", "encryption_key"):
        path = tmp_path / "a" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Never one from the source.
    source = "".join(p.read_text() for p in (ROOT / "controlplane").rglob("*.py"))
    assert first["secret"] not in source and first["keys"][0] not in source
