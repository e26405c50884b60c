"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FLOW = ROOT / "flows" / "configs" / "damage-survey.yaml"


def stage_config_copy(src: Path, dest: Path, **changes) -> Path:
    """A stage YAML with `changes` applied, written to `dest` with its file paths (model, gate, ...) made
    absolute so it works from any folder."""
    cfg = yaml.safe_load(src.read_text())
    for k in ("model", "gate", "hat_check"):
        if cfg.get(k):
            cfg[k] = str((src.parent / cfg[k]).resolve())
    dest.write_text(yaml.safe_dump(cfg | changes))
    return dest


def shipped_flow_config(dest: Path, source: dict) -> Path:
    """The shipped damage-survey config with `source:` replaced, written to `dest` with stage
    paths made absolute so it works from any folder."""
    cfg = yaml.safe_load(SHIPPED_FLOW.read_text())
    cfg["stages"] = [str((SHIPPED_FLOW.parent / s).resolve()) for s in cfg["stages"]]
    cfg["source"] = source
    dest.write_text(yaml.safe_dump(cfg))
    return dest


def naive_damage_pipeline():
    """The first issue's naive baseline: every damage-survey model at full resolution, one frame at a
    time, single-exit condition model, no reuse or gates."""
    from pipeline.runner import Pipeline
    from stages import load_stage

    w = ROOT / "data" / "weights"
    return Pipeline([
        load_stage({"type": "component_segmentation", "model": str(w / "components.pt"), "input_scale": 1.0, "batch_size": 1}),
        load_stage({"type": "damage_segmentation", "model": str(w / "damage.pt"), "input_scale": 1.0, "batch_size": 1}),
        load_stage({"type": "component_condition", "model": str(w / "condition.pt")}),
    ])


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_measure(script: str, name: str, args: list[str]) -> dict:
    """Run `script --measure ...` in its own process (so peak memory is its own) and parse its RESULT line."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=ROOT)
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        sys.exit(f"{name} failed:\n{out.stderr[-3000:]}")
    r = json.loads(line[0][7:])
    r["fps"] = r["frames"] / r["seconds"]
    print(f"{name:36s} {r['frames']:5d} frames  {r['fps']:7.2f} frames/s  peak {r['peak_rss_mb']:7.0f} MB", flush=True)
    return r


def measure_decode(clip: Path, n: int) -> dict:
    """Decode-only reference: the floor any flow on this clip sits on."""
    import time

    from pipeline.sources import SourceOptions, open_source

    t = time.perf_counter()
    frames = sum(1 for _ in open_source(clip, SourceOptions(max_frames=n or None)))
    return {"frames": frames, "seconds": time.perf_counter() - t}


def report_result(r: dict) -> None:
    """The child side of `run_measure`: add this process's peak memory and print the RESULT line."""
    import json

    r["peak_rss_mb"] = peak_mb()
    print("RESULT " + json.dumps(r))
