#!/bin/sh
# Validate the shipped monitoring files (CI step; docs/monitoring-prometheus.md):
#   promtool check config (syntax: the token files exist only where Prometheus runs),
#   promtool check rules, amtool check-config, and that every Grafana file parses.
# Exits non-zero at the first error. PROMTOOL / AMTOOL / PYTHON override the binaries.
set -eu

cd "$(dirname "$0")/.."
PROMTOOL="${PROMTOOL:-promtool}"
AMTOOL="${AMTOOL:-amtool}"
PYTHON="${PYTHON:-python3}"

"$PROMTOOL" check config --syntax-only monitoring/prometheus.yml
"$PROMTOOL" check rules monitoring/rules/*.yml
"$AMTOOL" check-config monitoring/alertmanager.yml
"$PYTHON" - <<'PY'
import json
import pathlib
import sys

import yaml

root = pathlib.Path("monitoring/grafana")
failed = False
for path in sorted(root.rglob("*")):
    if path.suffix not in {".json", ".yml", ".yaml"}:
        continue
    try:
        data = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
        if path.suffix == ".json":
            assert data.get("uid") and data.get("panels"), "a dashboard needs a uid and panels"
            for panel in data["panels"]:
                assert panel.get("targets"), f"panel {panel.get('title')!r} has no query"
    except Exception as exc:
        print(f"FAILED {path}: {exc}", file=sys.stderr)
        failed = True
    else:
        print(f"ok {path}")
sys.exit(1 if failed else 0)
PY
echo "monitoring config: all checks passed"
