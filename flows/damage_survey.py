"""The `damage-survey` flow: a drone video in, a per-component damage report out.

Frames are processed in chunks; each chunk is a Prefect task that writes its events, its piece
of the annotated video and a marker file. The marker is written last, so after a crash (even
kill -9) `resume=True` redoes only the unfinished chunk and the result equals an
uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
from prefect import flow, task
from tqdm import tqdm

import pipeline
from pipeline.annotate import annotate
from pipeline.budget import add_counters, compute_summary
from pipeline.errors import InspectflowError
from pipeline.linking import Registrar, to_mosaic_many
from pipeline.report import render_html
from pipeline.rollup import roll_up
from pipeline.runner import DEFAULT_CONFIGS, FlowConfig, Pipeline, load_flow_config
from pipeline.screen.review import write_review
from pipeline.sinks import EventLog, VideoPart, atomic_json, atomic_write, concat_videos
from pipeline.sources import open_source

DEFAULT_CONFIG = DEFAULT_CONFIGS / "damage-survey.yaml"

# Models and open sources live for the flow run; tasks receive only plain, persistable arguments.
_RUNS: dict[str, dict] = {}
# The CLI validates a run (building its pipeline) before Prefect starts; the flow reuses that build.
_PIPELINES: dict[str, Pipeline] = {}
# False: registration, events and video run between batches on the flow's thread (benchmarks/flow_budget.py
# --sink-thread 0 measures what the thread buys)
SINK_THREAD = True


def _io_fault(task, task_run, state) -> bool:
    try:
        state.result()
    except (OSError, cv2.error):
        return True
    except Exception:
        return False
    return False


def _event(r) -> dict:
    tel = r.frame.telemetry
    # a histogram, not np.bincount: 0.2 against 1.1-1.4 ms on a 720p mask
    counts = cv2.calcHist([r.damage_mask], [0], None, [4], [0, 4]).ravel() if r.damage_mask is not None else None
    dmg = {} if counts is None else {k: int(counts[i]) for i, k in ((1, "crack"), (2, "spall"), (3, "rebar"))}
    return {
        "frame": r.frame.index, "time_s": round(r.frame.time_s, 3), "reused": r.reused,
        "gps": None if tel is None else {"lat": tel.lat, "lon": tel.lon, "alt_m": tel.alt_m},
        "damage_px": dmg, "screen": r.screen,
        "components": [c.to_json() for c in r.components],
    }


def _chunk_path(out: Path, k: int) -> Path:
    return out / "chunks" / f"chunk_{k:05d}.json"


@task(name="process-chunk", retries=2, retry_delay_seconds=1, retry_condition_fn=_io_fault, persist_result=True)
def process_chunk(run_key: str, k: int, first: int, stop: int) -> dict:
    ctx = _RUNS[run_key]
    cfg: FlowConfig = ctx["cfg"]
    out, source, pipe = ctx["out"], ctx["source"], ctx["pipeline"]
    prev = json.loads(_chunk_path(out, k - 1).read_text()) if k > 0 else None
    reg = Registrar(cfg.linking.register_width, cfg.linking.register_history)
    if prev:
        # carry the mosaic plane across chunks, even past a chunk with no readable frame
        img = source.read_at(prev["last_frame"]) if prev["last_frame"] is not None else None
        reg.seed(None if img is None else img.image, prev["H"], prev["segment"], prev["segments"])
    log = EventLog(out / "events.jsonl", resume_offset=prev["offset"] if prev else 0)
    part = VideoPart(out / "parts" / f"part_{k:05d}.mp4", source.fps / cfg.source.stride)
    n_skipped_before = len(source.skipped)
    pipe.reset()  # reuse only within a chunk, so a resumed chunk computes exactly what the first try did
    reused_before, counted_before = pipe.reused, pipe.counters()
    obs, flagged, n, last, t0 = [], [], 0, prev["last_frame"] if prev else None, time.perf_counter()
    footprints = []  # each frame's outline in the mosaic plane: where the roll-up could have seen a component
    batch, pending = [], None
    # Registration, events and the video (about 16 ms of one core per 720p frame) run on a thread of their own
    # while the models take the next batch; OpenCV releases the GIL. On 2 cores the models already fill both, so
    # this bought only 1.03-1.08x there (README, "Early exits"); spare cores should hide it. One batch in flight keeps
    # memory flat; one thread keeps events and registration in frame order.
    sinks = ThreadPoolExecutor(1, thread_name_prefix="damage-survey-sinks")

    def write(results):
        nonlocal n, last
        for r in results:
            H, seg = reg.update(r.frame.image)
            ev = _event(r)
            log.append(ev)
            action = r.screen_action()
            if action is not None:
                flagged.append({"frame": r.frame.index, "action": action,
                                "scores": {k: v["score"] for k, v in r.screen.items() if v["flagged"]}})
            if action == "review":
                write_review(out / "review", r, ev)  # held for a person to look at, and kept out of the roll-up
            else:
                tel = r.frame.telemetry
                gps = None if tel is None else {"lat": tel.lat, "lon": tel.lon, "alt_m": tel.alt_m}
                h, w = r.frame.image.shape[:2]
                # the frame's own outline goes through the same one transform as its components'
                outline, *polys = to_mosaic_many([((w / 2, h / 2), (w, h), 0.0)] + [c.rect for c in r.components], H)
                footprints.append([r.frame.index, seg, outline])
                for c, poly in zip(r.components, polys):
                    obs.append({"frame": r.frame.index, "class_id": c.class_id, "segment": seg, "poly": poly,
                                "state": c.state, "damage_ratio": round(c.damage_ratio(), 5), "damage_px": c.damage_px,
                                "area": c.area_px, "rect": [list(c.rect[0]), list(c.rect[1]), c.rect[2]], "gps": gps})
            if cfg.video.enabled:
                part.write(annotate(r, cfg.video.scale))
            n, last = n + 1, r.frame.index
            ctx["bar"].update(1)

    def flush():
        nonlocal pending
        results = pipe(batch)
        batch.clear()
        if not SINK_THREAD:
            write(results)
            return
        if pending is not None:
            pending.result()  # raises what the sink thread raised
        pending = sinks.submit(write, results)

    try:
        for frame in source.iter_range(first, stop):
            batch.append(frame)
            if len(batch) >= cfg.batch_size:
                flush()
        if batch:
            flush()
        if pending is not None:
            pending.result()
    finally:
        sinks.shutdown(wait=True)
    offset = log.commit()
    log.close()
    part.close()
    marker = {"chunk": k, "first": first, "stop": stop, "frames": n, "last_frame": last, "H": reg.H.tolist(), "segment": reg.segment,
              "segments": reg.segments,
              "offset": offset, "seconds": round(time.perf_counter() - t0, 3), "reused": pipe.reused - reused_before,
              "compute": {k: v - counted_before.get(k, 0) for k, v in pipe.counters().items()},
              "skipped": source.skipped[n_skipped_before:], "observations": obs, "footprints": footprints, "screened": flagged}
    atomic_json(_chunk_path(out, k), marker, indent=None)  # last: its presence means the chunk is complete
    return {"chunk": k, "frames": n, "seconds": marker["seconds"]}


def _fingerprint(source: str, cfg: FlowConfig) -> str:
    # not the device: a run interrupted on the GPU may be resumed on the CPU (the masks agree to float rounding)
    return hashlib.sha256(json.dumps([str(source), cfg.model_dump(exclude={"device"})], sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def _plan(source, chunk_frames: int) -> list[tuple[int, int]]:
    idx = list(source.indices())
    if not idx:
        raise InspectflowError(f"source {source.name} yields no frames with these start/stride/max_frames options",
                               "lower `start` or `stride` in the flow config's `source:` section")
    bounds = [idx[i] for i in range(0, len(idx), chunk_frames)] + [idx[-1] + 1]
    return list(zip(bounds[:-1], bounds[1:]))


def prepare(source: str, out: str, config: str | None = None, resume: bool = False, device: str | None = None):
    """Every check that can fail on bad input, done before the flow starts: config, source,
    output folder, and every stage's weights. Returns what the flow needs. `device` overrides the config's."""
    cfg, base = load_flow_config(config or DEFAULT_CONFIG)
    if device is not None:
        cfg = cfg.model_copy(update={"device": device})
    out_dir = Path(out)
    src = open_source(source, cfg.source.options())
    if src.total is None:
        raise InspectflowError(f"{source} is a live stream; the damage survey needs a recorded flight",
                               "record the stream to a file first, or use the site-safety flow for live cameras")
    fp = _fingerprint(source, cfg)
    run_file = out_dir / "run.json"
    if run_file.exists():
        prior = json.loads(run_file.read_text())
        if not resume:
            raise InspectflowError(f"{out_dir} already holds a run", "pass --resume to continue it, or choose another --out")
        if prior["fingerprint"] != fp:
            raise InspectflowError(f"{out_dir} holds a run of another source or config, which --resume cannot continue",
                                   "use the same --source and --config as that run, or choose another --out")
    key = f"{fp}:{cfg.device}"
    if key not in _PIPELINES:
        _PIPELINES.clear()
        _PIPELINES[key] = Pipeline.from_config(cfg, base)
    return cfg, src, _PIPELINES[key], fp


@flow(name="damage-survey", log_prints=True, persist_result=False)
def damage_survey(source: str, out: str, config: str | None = None, resume: bool = False, progress: bool = True,
                  device: str | None = None) -> dict:
    """Run the damage survey over `source` and write events, video, summary and report to `out`; `device`
    (cpu, cuda, cuda:N, mps) places every model there, over the config's setting."""
    cfg, src, pipe, fp = prepare(source, out, config, resume, device)
    out_dir, run_file = Path(out), Path(out) / "run.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_json(run_file, {"fingerprint": fp, "source": str(source), "config": str(config or DEFAULT_CONFIG), "flow": cfg.model_dump()})
    plan = _plan(src, cfg.chunk_frames)
    key = f"{fp}:{out_dir.resolve()}"
    total = len(src.indices())
    _RUNS[key] = {"cfg": cfg, "out": out_dir, "source": src, "pipeline": pipe,
                  "bar": tqdm(total=total, desc="damage-survey", unit="frame", disable=not progress)}
    t0 = time.perf_counter()
    try:
        for k, (first, stop) in enumerate(plan):
            if resume and _chunk_path(out_dir, k).exists():
                _RUNS[key]["bar"].update(json.loads(_chunk_path(out_dir, k).read_text())["frames"])
                continue
            process_chunk(key, k, first, stop)
    finally:
        _RUNS[key]["bar"].close()
        del _RUNS[key]
    return finish(out_dir, src, cfg, plan, time.perf_counter() - t0, str(config or DEFAULT_CONFIG))


def finish(out_dir: Path, src, cfg: FlowConfig, plan, seconds: float, config: str) -> dict:
    markers = [json.loads(_chunk_path(out_dir, k).read_text()) for k in range(len(plan))]
    obs = [o for m in markers for o in m["observations"]]
    n = sum(m["frames"] for m in markers)
    busy = sum(m["seconds"] for m in markers)
    footprints = [f for m in markers for f in m["footprints"]]
    rollup = roll_up(obs, cfg.linking.iou, cfg.linking.max_gap_frames, cfg.worst, footprints=footprints,
                     min_presence=cfg.linking.min_presence)
    summary = {
        "version": pipeline.__version__, "run": {"source": src.name, "config": config},
        "frames_processed": n, "fps": n / max(busy, 1e-9), "seconds": round(seconds, 2),
        "frames_reused": sum(m.get("reused", 0) for m in markers),
        "skipped": [s for m in markers for s in m["skipped"]], "rollup": rollup,
        "registration": {"segments": markers[-1]["segments"] if markers else 0},
        "screened": [s for m in markers for s in m.get("screened", [])],
        "compute": compute_summary(cfg.budget, n, add_counters([m.get("compute", {}) for m in markers])),
    }
    if cfg.video.enabled:
        parts = [out_dir / "parts" / f"part_{k:05d}.mp4" for k in range(len(plan))]
        # parts are gone once a run has finished; resuming a finished run keeps its video
        if all(p.exists() for p in parts):
            concat_videos(parts, out_dir / "annotated.mp4", src.fps / cfg.source.stride)
    atomic_json(out_dir / "summary.json", summary)

    def read_frame(i):
        f = src.read_at(i)
        return None if f is None else f.image

    atomic_write(out_dir / "report.html", render_html(summary, out_dir / "events.jsonl", read_frame))
    shutil.rmtree(out_dir / "parts", ignore_errors=True)
    return summary
