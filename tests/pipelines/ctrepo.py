"""A small Git repository whose `.controlplane.yml` has named pipelines, parameters, schedules
and an environment schedule: what the trigger and schedule tests run."""

import textwrap
from pathlib import Path

from .gitrepo import Repo

SPEC = textwrap.dedent(
    """
    version: 1
    environments: {dev: {}, production: {}}
    jobs:
      build:
        kind: script
        script: ["echo push pipeline"]
        produces: {raw: out/raw.csv}
    pipelines:
      features:
        on_dataset: [raw]
        params:
          rows: {type: number, default: 5, minimum: 1, maximum: 100}
          region: {type: choice, choices: [eu, us], default: eu}
          full: {type: boolean, default: false}
        jobs:
          prepare:
            kind: script
            script:
              - echo "rows=$PARAM_ROWS region=$PARAM_REGION full=$PARAM_FULL target=$TARGET"
              - echo "version=$(cat VERSION)"
      solo:
        concurrency: skip
        jobs: {s: {kind: script, script: ["sleep 30"]}}
      latest:
        concurrency: cancel_previous
        jobs: {l: {kind: script, script: ["sleep 30"]}}
      needy:
        params: {note: {type: string}}
        jobs: {n: {kind: script, script: ["echo $PARAM_NOTE"]}}
    schedules:
      nightly: "0 3 * * *"
    """
).lstrip()


def ct_repo(base: Path, schedules: str = "", version: str = "one") -> Repo:
    """The repository at ``base``; ``schedules`` adds entries under `schedules:` (indented
    by two spaces), ``version`` is the content of the file VERSION the job prints."""
    source = base / "source"
    source.mkdir(parents=True)
    (source / ".controlplane.yml").write_text(SPEC + textwrap.indent(schedules, "  "))
    (source / "VERSION").write_text(version + "\n")
    return Repo(base / "repo", source=source)
