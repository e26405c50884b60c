"""The `site-safety` flow: a site video or live camera in; per-worker hard-hat status, alerts and a summary out.

source -> detector (tracked) -> hat rule -> zones -> status over time -> alerts / events / video.
Each chunk of frames is a Prefect task. Tracking state lives across chunks in this process, so a
run is not resumable: a scheduled job starts a fresh run folder each time instead.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from prefect import flow, task
from tqdm import tqdm

import pipeline
from pipeline.budget import compute_summary
from pipeline.errors import InspectflowError
from pipeline.runner import DEFAULT_CONFIGS, Pipeline
from pipeline.safety.alerts import AlertSink
from pipeline.safety.draw import annotate_safety
from pipeline.safety.flow_config import SafetyFlowConfig, load_config  # noqa: F401  (load_config: the flow's API too)
from pipeline.safety.status import WorkerStatus
from pipeline.safety.zones import ZoneMap
from pipeline.safety.report import render_safety_html
from pipeline.screen.review import write_review, write_thumbnail
from pipeline.sinks import EventLog, VideoPart, atomic_json, atomic_write, concat_videos
from pipeline.sources import open_source

DEFAULT_CONFIG = DEFAULT_CONFIGS / "site-safety.yaml"
_RUNS: dict[str, dict] = {}
_PIPELINES: dict[str, Pipeline] = {}


def _feet(d) -> tuple[float, float]:
    """Where a worker stands, for zones: the bottom of their body box, or their head if no body was seen."""
    if d.head.person_box is not None:
        x0, _, x1, y1 = d.head.person_box
        return (x0 + x1) / 2, y1
    return d.head.point


@task(name="safety-chunk", persist_result=True)
def process_chunk(run_key: str, k: int) -> dict:
    ctx = _RUNS[run_key]
    cfg: SafetyFlowConfig = ctx["cfg"]
    out, pipe, status, sink, log = ctx["out"], ctx["pipeline"], ctx["status"], ctx["sink"], ctx["log"]
    part = VideoPart(out / "parts" / f"part_{k:05d}.mp4", ctx["fps"] / cfg.source.stride)
    frames = list(itertools.islice(ctx["frames"], cfg.chunk_frames))
    t0 = time.perf_counter()
    for i in range(0, len(frames), cfg.batch_size):
        for r in pipe(frames[i : i + cfg.batch_size]):
            if ctx["zones"] is None:
                ctx["zones"] = ZoneMap(cfg.zones, (r.frame.image.shape[1], r.frame.image.shape[0]))
            observed = {}
            for d in r.decisions:
                d.checked, d.zone = ctx["zones"].locate(_feet(d))
                if d.checked and d.head.track_id >= 0:
                    observed[d.head.track_id] = d.status
                    ctx["workers"].add(d.head.track_id)
            changes = status.update(r.frame.time_s, observed)
            ev = {"frame": r.frame.index, "time_s": round(r.frame.time_s, 3), "reused": r.reused,
                  "workers": [d.to_json() for d in r.decisions], "changes": changes, "screen": r.screen}
            log.append(ev)
            action = r.screen_action()
            if action is not None:
                flagged = {"frame": r.frame.index, "time_s": ev["time_s"], "action": action,
                           "scores": {k: v["score"] for k, v in r.screen.items() if v["flagged"]}}
                if len(ctx["screened"]) < 24:  # the report shows the first few; events.jsonl has them all
                    flagged["thumbnail"] = write_thumbnail(out / "screened", r)
                ctx["screened"].append(flagged)
                if action == "review":
                    write_review(out / "review", r, ev)
            if changes:
                img = annotate_safety(r, ctx["zones"], status.violating())
                by_id = {d.head.track_id: d for d in r.decisions}
                for c in changes:
                    who = by_id.get(c["track_id"])
                    sink.emit({**c, "frame": r.frame.index, "source": r.frame.source,
                               "worker": who.to_json() if who else None}, img)
            elif sink.cfg.webhook:
                sink.outbox.deliver()  # retry waiting alerts when their back-off is over
            if cfg.video.enabled:
                part.write(annotate_safety(r, ctx["zones"], status.violating(), cfg.video.scale))
            ctx["bar"].update(1)
    log.commit()
    part.close()
    return {"chunk": k, "frames": len(frames), "seconds": round(time.perf_counter() - t0, 3),
            "done": len(frames) < cfg.chunk_frames}


def prepare(source: str, out: str, config: str | None = None, device: str | None = None):
    """Everything that can fail on bad input, before Prefect starts: config, zones, source, output folder, weights.
    `device` overrides the config's."""
    cfg, base = load_config(config or DEFAULT_CONFIG)
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    src = open_source(source, cfg.source.options())
    out_dir = Path(out)
    if (out_dir / "run.json").exists():
        raise InspectflowError(f"{out_dir} already holds a site-safety run",
                               "choose another --out (scheduled jobs make one folder per run)")
    key = json.dumps([str(config or DEFAULT_CONFIG), cfg.model_dump()], sort_keys=True, default=str)
    if key not in _PIPELINES:
        _PIPELINES.clear()
        _PIPELINES[key] = Pipeline.from_config(cfg, base)
    return cfg, src, _PIPELINES[key]


@flow(name="site-safety", log_prints=True, persist_result=False)
def site_safety(source: str, out: str, config: str | None = None, progress: bool = True,
                run_subdir: bool = False, device: str | None = None) -> dict:
    """Check hard hats on `source`; write events.jsonl, alerts.jsonl, snapshots/, annotated.mp4, summary.json
    and report.html.
    With `run_subdir`, each run writes to a new OUT/<UTC time>/ folder (used by scheduled jobs); `device`
    (cpu, cuda, cuda:N, mps) places every model there, over the config's setting."""
    if run_subdir:
        out = str(Path(out) / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    cfg, src, pipe = prepare(source, out, config, device)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_json(out_dir / "run.json", {"source": str(source), "config": str(config or DEFAULT_CONFIG),
                                       "flow": cfg.model_dump(), "started": datetime.now(timezone.utc).isoformat()})
    pipe.reset()
    for stage in pipe.stages:
        if hasattr(stage, "backend"):
            stage.backend.reset()  # a new run must not inherit the last run's track ids
    key = str(out_dir.resolve())
    total = len(src.indices()) if src.total is not None else None
    sink = AlertSink(out_dir, cfg.alerts)
    _RUNS[key] = {"cfg": cfg, "out": out_dir, "pipeline": pipe, "frames": iter(src), "fps": src.fps,
                  "status": WorkerStatus(cfg.status), "sink": sink, "log": EventLog(out_dir / "events.jsonl"),
                  "zones": None, "workers": set(), "screened": [],
                  "bar": tqdm(total=total, desc="site-safety", unit="frame", disable=not progress)}
    t0, chunks = time.perf_counter(), []
    try:
        for k in itertools.count():
            chunks.append(process_chunk(key, k))
            if chunks[-1]["done"]:
                break
    finally:
        ctx = _RUNS.pop(key)
        ctx["bar"].close()
        ctx["log"].close()
        delivery = sink.close()
    n = sum(c["frames"] for c in chunks)
    busy = sum(c["seconds"] for c in chunks)
    if cfg.video.enabled:
        parts = [out_dir / "parts" / f"part_{c['chunk']:05d}.mp4" for c in chunks]
        concat_videos([p for p in parts if p.exists()], out_dir / "annotated.mp4", src.fps / cfg.source.stride)
        shutil.rmtree(out_dir / "parts", ignore_errors=True)
    alerts = [json.loads(x) for x in (out_dir / "alerts.jsonl").read_text().splitlines() if x.strip()]
    summary = {
        "version": pipeline.__version__, "run": {"source": src.name, "config": str(config or DEFAULT_CONFIG)},
        "frames_processed": n, "fps": n / max(busy, 1e-9), "seconds": round(time.perf_counter() - t0, 2),
        "workers_seen": len(ctx["workers"]), "frames_reused": pipe.reused,
        "compute": compute_summary(cfg.budget, n, pipe.counters()),
        "violations": [a for a in alerts if a["type"] == "violation_start"],
        "alerts": delivery, "stream_gaps": getattr(src, "gaps", []), "skipped": src.skipped,
        "screened": ctx["screened"],
    }
    atomic_json(out_dir / "summary.json", summary)
    atomic_write(out_dir / "report.html", render_safety_html(summary, out_dir))
    return summary

