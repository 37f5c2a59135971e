"""A process-deployer switch interrupted half-way (its switch.json left behind) is undone by
the next deploy, stop or supervisor pass: what it started is stopped, what state.json says
serves is kept."""

import json
import subprocess

from apps.core.processes import start_time
from apps.releases.deployers.process import STATE, SWITCH, recover_switch, supervise


def spawn():
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)  # noqa: S607
    return proc, {"pid": proc.pid, "pid_start": start_time(proc.pid)}


def test_an_interrupted_switch_is_undone_and_the_serving_release_kept(tmp_path):
    here = tmp_path / "churn" / "dev"
    here.mkdir(parents=True)
    serving, serving_entry = spawn()
    half, half_entry = spawn()
    try:
        state = {"release": "v1", "env_file": "1.env.json", "log": str(here / "1.log")}
        (here / STATE).write_text(json.dumps({**state, **serving_entry, "port": 1}))
        (here / "2.env.json").write_text("{}")
        started = [{**serving_entry, "port": 1}, {**half_entry, "port": 2}]
        journal = {"release": "v2", "deployment_id": 2, "env_file": "2.env.json"}
        (here / SWITCH).write_text(json.dumps({**journal, "started": started}))
        lines = recover_switch(here)
        assert half.wait(timeout=10) is not None and serving.poll() is None
        assert any(f"stopped pid {half.pid}" in line for line in lines)
        assert not (here / SWITCH).exists() and not (here / "2.env.json").exists()
        assert recover_switch(here) == []  # nothing left to undo
    finally:
        for p in (serving, half):
            p.kill()
            p.wait()


def test_the_supervisor_undoes_a_first_deploy_that_was_interrupted(tmp_path):
    here = tmp_path / "churn" / "dev"
    here.mkdir(parents=True)
    half, entry = spawn()
    try:
        journal = {"release": "v1", "deployment_id": 1, "env_file": "1.env.json"}
        (here / SWITCH).write_text(json.dumps({**journal, "started": [{**entry, "port": 2}]}))
        done = supervise(tmp_path)  # no state.json: nothing served before
        assert done == [
            {"project": "churn", "environment": "dev", "recovered": done[0]["recovered"]}
        ]
        assert half.wait(timeout=10) is not None and not (here / SWITCH).exists()
    finally:
        if half.poll() is None:
            half.kill()
            half.wait()
