import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from model import training  # noqa: E402


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """(model_path, bundle, metrics) trained once per session in a temp dir.

    Tests never write into the project's own artifacts/ directory.
    """
    out = tmp_path_factory.mktemp("artifacts")
    bundle, metrics = training.train_from_raw()
    path = training.save(bundle, metrics, out)
    return path, bundle, metrics
