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


@pytest.fixture(scope="session")
def features_csv(tmp_path_factory) -> Path:
    """data/raw.csv prepared by prepare.py, once per session."""
    import prepare

    out = tmp_path_factory.mktemp("features") / "features.csv"
    assert prepare.main(["--in", str(ROOT / "data" / "raw.csv"), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def eval_csv() -> Path:
    return ROOT / "data" / "eval.csv"
