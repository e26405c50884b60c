"""A real Prefect server on loopback, a job scheduled a minute ahead, and proof that it ran."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import ROOT
from tests.test_safety import free_port


def _wait(cond, timeout, what, procs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process exited early:\n{p.stdout.read()[-4000:] if p.stdout else ''}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _up(url):
    try:
        with urllib.request.urlopen(url + "/health", timeout=2):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_cron_job_runs_on_a_real_prefect_server(tiny_safety, tmp_path):
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_RUNNER_POLL_FREQUENCY": "2"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    serve = None
    try:
        _wait(lambda: _up(api), 180, "the Prefect server to start", [server])
        now = datetime.now(timezone.utc)
        at = (now + timedelta(minutes=1)).replace(second=0, microsecond=0)
        if (at - now).total_seconds() < 25:  # leave time to register the deployment before it is due
            at += timedelta(minutes=1)
        cron = f"{at.minute} {at.hour} * * *"
        out = tmp_path / "runs"
        serve = subprocess.Popen([sys.executable, "-m", "pipeline", "schedule", "site-safety", "--cron", cron,
                                  "--source", str(tiny_safety["clip"]), "--config", str(tiny_safety["flow"]),
                                  "--out", str(out), "--name", "test"],
                                 env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 start_new_session=True)
        _wait(lambda: any(out.glob("*/summary.json")), (at - datetime.now(timezone.utc)).total_seconds() + 180,
              "the scheduled run's summary.json", [serve])
        run_dir = next(out.glob("*/summary.json")).parent
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["frames_processed"] == 15 and (run_dir / "events.jsonl").exists()
        # the server recorded a scheduled, completed run of the deployment
        req = urllib.request.Request(api + "/flow_runs/filter", json.dumps({"limit": 10}).encode(),
                                     {"Content-Type": "application/json"}, method="POST")

        def completed():
            with urllib.request.urlopen(req, timeout=5) as r:
                runs = json.loads(r.read())
            return [x for x in runs if x["state_type"] == "COMPLETED" and x["deployment_id"]]

        _wait(lambda: completed(), 30, "the run to be COMPLETED on the server")
        run = completed()[0]
        assert datetime.fromisoformat(run["expected_start_time"].replace("Z", "+00:00")) == at
    finally:
        for p in (serve, server):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
