"""Scheduled flows: a Prefect deployment with a cron schedule, served by this process against a Prefect server.

Prefect's embedded mode cannot keep a schedule; a server (`prefect server start`, SQLite) holds it.
Every input is checked here, before anything is registered, so a typo fails now and not at 7 am.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from pipeline.errors import ConfigError, InspectflowError

SCHEDULABLE = ("site-safety",)


def check_cron(cron: str, timezone: str = "UTC"):
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    try:
        return CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as e:
        msg = e.errors()[0]["msg"]
        raise ConfigError(f"--cron {cron!r} / --timezone {timezone!r}: {msg}",
                          'use five fields "minute hour day month weekday", e.g. "0 7-17 * * 1-5", and an IANA zone') from e


def check_server() -> str:
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from prefect.settings import PREFECT_API_URL

        url = PREFECT_API_URL.value()
    fix = ("start one with `prefect server start --host 127.0.0.1 --port 4200` and "
           "`export PREFECT_API_URL=http://127.0.0.1:4200/api`")
    if not url:
        raise InspectflowError("no Prefect server is configured (PREFECT_API_URL is not set); schedules need one", fix)
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=5) as r:
            r.read()
    except (OSError, urllib.error.URLError) as e:
        raise InspectflowError(f"the Prefect server at {url} is unreachable ({e})", fix) from e
    return url


def serve_scheduled(flow_name: str, cron: str, source: str, out: Path, config: Path | None, name: str,
                    timezone: str = "UTC") -> None:
    if flow_name not in SCHEDULABLE:
        raise InspectflowError(f"flow {flow_name!r} cannot be scheduled", f"use one of: {', '.join(SCHEDULABLE)}")
    schedule = check_cron(cron, timezone)
    check_server()
    from flows.site_safety import prepare, site_safety

    # fail now on a bad source/config/weights, not at the first scheduled run
    prepare(source, str(Path(out) / "_check_"), str(config) if config else None)
    params = {"source": source, "out": str(Path(out).resolve()), "config": str(config.resolve()) if config else None,
              "progress": False, "run_subdir": True}
    site_safety.serve(name=name, schedules=[schedule], parameters=params, print_starting_message=True)
