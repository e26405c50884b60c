"""Each flow at each `budget` against the naive baseline of the first issues, on the same clip, with
quality measured alongside. Every row runs in its own process; ratios are against rows of this run.

Damage survey (a synthetic 720p drone pass with per-frame labels; by default half of it over intact
stretches, as most of a real survey is):
  - naive: every model at full resolution on every frame, single-exit condition model
    (benchmarks/throughput.py's baseline), timed and scored on every `--naive-every`-th frame;
  - pipeline rows: the flow's stage chain at each budget, chunked like the flow, timed around the
    models and the frame gate only, and scored on every frame: damage IoU (crack/spall/rebar),
    component mIoU, condition macro-F1 of the components found (state of the GT instance under each);
  - flow rows: the whole Prefect flow (registration, linking, video, report) at each budget; its
    busy frames/s, which excludes Prefect's start-up.
Site safety (a synthetic 720p fixed-camera clip, by default with nobody on site for half of each
10 s): naive two-model baseline at 1280 px on every `--naive-every`-th frame, then the flow at each
budget, with the hard-hat status F1 of benchmarks/safety_throughput.py (naive: of the frames it ran).

    python benchmarks/flow_budget.py [--seconds 10] [--intact 0.5] [--empty 0.5] [--naive-every 5] [--flows damage,site] [--ablate]
                                     [--float-rows] [--gate-rows]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import SHIPPED_FLOW, report_result, run_measure  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache"
RESULTS = ROOT / "benchmarks" / "results"
SITE_FLOW = ROOT / "flows" / "configs" / "site-safety.yaml"
BUDGETS = ["full", "balanced", "fast"]


class Scores:
    """Confusions and condition pairs summed over the frames scored."""

    def __init__(self, clip: Path):
        self.labels = dict(np.load(clip.with_suffix(".labels.npz")))
        self.state_of = dict(zip(self.labels["instance_ids"].tolist(), self.labels["instance_state"].tolist()))
        self.cc, self.dc = np.zeros((8, 8), np.int64), np.zeros((4, 4), np.int64)
        self.true, self.pred = [], []

    def add(self, r) -> None:
        from pipeline.core import DAMAGEABLE
        from pipeline.metrics import confusion
        from pipeline.synth.video import frame_labels

        comp, inst, dmg = frame_labels(self.labels, r.frame.index)
        self.cc += confusion(r.component_mask, comp, 8)
        self.dc += confusion(r.damage_mask, dmg, 4)
        for c in r.components:
            if c.class_id not in DAMAGEABLE or c.state is None:
                continue
            x0, y0, x1, y1 = (max(v, 0) for v in c.box)
            ids = inst[y0:y1, x0:x1][comp[y0:y1, x0:x1] == c.class_id]
            ids = ids[ids > 0]
            if ids.size:
                self.true.append(self.state_of[int(np.bincount(ids).argmax())])
                self.pred.append(c.state)

    def result(self) -> dict:
        from sklearn.metrics import f1_score

        from pipeline.metrics import iou_per_class

        ci, di = iou_per_class(self.cc), iou_per_class(self.dc)
        return {"damage_iou": round(float(np.nanmean(di[1:])), 4), "damage_iou_per_class": np.round(di[1:], 4).tolist(),
                "component_miou": round(float(np.nanmean(ci[1:])), 4),
                "condition_f1": round(float(f1_score(self.true, self.pred, average="macro", labels=[0, 1, 2, 3], zero_division=0)), 4),
                "condition_views": len(self.true)}


def measure_naive(clip: Path, every: int) -> dict:
    from benchmarks._common import naive_damage_pipeline
    from pipeline.sources import SourceOptions, open_source

    pipe = naive_damage_pipeline()
    sc, busy, n = Scores(clip), 0.0, 0
    for f in open_source(clip, SourceOptions(stride=every)):
        t = time.perf_counter()
        (r,) = pipe([f])
        busy += time.perf_counter() - t
        sc.add(r)
        n += 1
    return {"frames": n, "seconds": busy, **sc.result()}


def _damage_cfg(budget: str, dest: Path, gate: bool = True, component_scale: float | None = None,
                precision: str | None = None, damage_precision: str | None = None, damage_runtime: str | None = None) -> Path:
    """`gate=False`: the damage segmenter without its "nothing here" exit, to see what the exit buys;
    `damage_runtime`: the damage segmenter's runtime instead of its YAML's; "torch+gate" switches its gate on
    (data/weights/damage_gate.pt), which runs in torch;
    `component_scale`: the component segmenter's input scale instead of its YAML's (and the budget's);
    `precision`: both segmenters' `precision` (fp32 or int8) instead of their YAMLs'; `damage_precision`: the damage
    segmenter's alone."""
    cfg = yaml.safe_load(SHIPPED_FLOW.read_text())
    cfg["stages"] = [str((SHIPPED_FLOW.parent / s).resolve()) for s in cfg["stages"]]
    cfg["budget"] = budget
    cfg.pop("reuse", None)
    for i, path in enumerate(cfg["stages"]):
        st = yaml.safe_load(Path(path).read_text())
        kind, before = st.get("type"), dict(st)
        if kind == "damage_segmentation" and not gate:
            st.pop("gate", None)
        if kind == "component_segmentation" and component_scale:
            st["input_scale"] = component_scale
        if kind in ("component_segmentation", "damage_segmentation") and precision:
            st["precision"] = precision
        if kind == "damage_segmentation" and damage_precision:
            st["precision"] = damage_precision
        if kind == "damage_segmentation" and damage_runtime:
            st["runtime"] = damage_runtime.removesuffix("+gate")
            if damage_runtime.endswith("+gate"):
                st["gate"] = str(ROOT / "data" / "weights" / "damage_gate.pt")
        if st == before:
            continue
        st["model"] = str((Path(path).parent / st["model"]).resolve())
        cfg["stages"][i] = st
    dest.write_text(yaml.safe_dump(cfg))
    return dest


def measure_pipe(clip: Path, budget: str, gate: bool = True, component_scale: float | None = None,
                 precision: str | None = None, damage_precision: str | None = None, damage_runtime: str | None = None) -> dict:
    from pipeline.budget import compute_summary
    from pipeline.runner import Pipeline, load_flow_config
    from pipeline.sources import SourceOptions, open_source

    with tempfile.TemporaryDirectory() as d:
        cfg, base = load_flow_config(_damage_cfg(budget, Path(d) / "flow.yaml", gate, component_scale, precision, damage_precision,
                                                 damage_runtime))
    pipe = Pipeline.from_config(cfg, base)
    sc, busy, n, counted, flagged = Scores(clip), 0.0, 0, [], {}
    frames = list(open_source(clip, SourceOptions()))
    for c0 in range(0, len(frames), cfg.chunk_frames):
        pipe.reset()  # as the flow does at each chunk
        before = pipe.counters()
        chunk = frames[c0 : c0 + cfg.chunk_frames]
        for i in range(0, len(chunk), cfg.batch_size):
            t = time.perf_counter()
            out = pipe(chunk[i : i + cfg.batch_size])
            busy += time.perf_counter() - t
            for r in out:
                sc.add(r)
                for target, v in r.screen.items():
                    flagged[target] = flagged.get(target, 0) + int(v["flagged"])
            n += len(out)
        counted.append({k: v - before.get(k, 0) for k, v in pipe.counters().items()})
    from pipeline.budget import add_counters

    return {"frames": n, "seconds": busy, **sc.result(), "compute": compute_summary(budget, n, add_counters(counted)),
            "screen_flagged": flagged}


def measure_damage_flow(clip: Path, budget: str, precision: str | None = None, damage_precision: str | None = None) -> dict:
    from flows.damage_survey import damage_survey

    with tempfile.TemporaryDirectory() as d:
        s = damage_survey(str(clip), str(Path(d) / "out"), str(_damage_cfg(budget, Path(d) / "flow.yaml", precision=precision, damage_precision=damage_precision)),
                         progress=False)
    return {"frames": s["frames_processed"], "seconds": s["frames_processed"] / s["fps"], "compute": s["compute"],
            "components": s["rollup"]["unique_components"]}


def measure_site_flow(clip: Path, budget: str, only: str | None = None, imgsz: int | None = None) -> dict:
    """`only`: "gate" (reuse off) or "reuse" (detector gate off), to see what each part costs;
    `imgsz`: the detector's input size instead of its YAML's (and the budget's)."""
    from benchmarks.safety_throughput import status_f1
    from flows.site_safety import site_safety

    with tempfile.TemporaryDirectory() as d:
        cfg = yaml.safe_load(SITE_FLOW.read_text())
        cfg["stages"] = [str((SITE_FLOW.parent / s).resolve()) for s in cfg["stages"]]
        cfg["budget"] = budget
        cfg.pop("reuse", None)
        if only == "gate":
            cfg["reuse"] = {"enabled": False}
        if only == "reuse" or imgsz:
            det_path = Path(cfg["stages"][0])
            det = yaml.safe_load(det_path.read_text())
            det["model"] = str((det_path.parent / det["model"]).resolve())
            det["gate"] = None if only == "reuse" or not det.get("gate") else str((det_path.parent / det["gate"]).resolve())
            det["imgsz"] = imgsz or det["imgsz"]
            cfg["stages"][0] = det
        (Path(d) / "flow.yaml").write_text(yaml.safe_dump(cfg))
        s = site_safety(str(clip), str(Path(d) / "out"), str(Path(d) / "flow.yaml"), progress=False)
        f1 = status_f1(Path(d) / "out" / "events.jsonl", clip.with_suffix(".labels.jsonl"))
    return {"frames": s["frames_processed"], "seconds": s["frames_processed"] / s["fps"], "hardhat_f1": round(f1, 4),
            "compute": s["compute"]}


def damage_clip(a) -> Path:
    """The damage rows' synthetic 720p pass (seed 11), made once and cached."""
    from pipeline.synth.video import facade_video

    clip = CACHE / f"pass_720p_{a.seconds:g}s_intact{a.intact:g}.mp4"
    if not clip.exists():
        facade_video(clip, seconds=a.seconds, seed=11, fps=30, size=(1280, 720), intact=a.intact)
    return clip


def damage_rows(a) -> dict:
    clip = damage_clip(a)
    rows = {"naive": run_measure(__file__, "damage naive (full res, every model)",
                                 ["--clip", str(clip), "--measure", "naive", "--every", str(a.naive_every)])}
    for b in BUDGETS:
        rows[f"pipeline {b}"] = run_measure(__file__, f"damage pipeline, budget {b}", ["--clip", str(clip), "--measure", "pipe", "--budget", b])
    if a.ablate:
        rows["pipeline balanced, no damage gate"] = run_measure(__file__, "damage pipeline, balanced, no damage gate",
                                                                ["--clip", str(clip), "--measure", "pipe", "--budget", "balanced", "--only", "reuse"])
    if a.ablate or a.float_rows:
        rows["pipeline balanced, float segmenters"] = run_measure(__file__, "damage pipeline, balanced, float segmenters",
                                                                  ["--clip", str(clip), "--measure", "pipe", "--budget", "balanced", "--precision", "fp32"])
    if not a.no_flow:
        for b in BUDGETS:
            rows[f"flow {b}"] = run_measure(__file__, f"damage flow, budget {b}", ["--clip", str(clip), "--measure", "flow", "--budget", b])
        if a.ablate or a.float_rows:
            rows["flow balanced, float segmenters"] = run_measure(__file__, "damage flow, balanced, float segmenters",
                                                                  ["--clip", str(clip), "--measure", "flow", "--budget", "balanced", "--precision", "fp32"])
    return rows


def gate_rows(a) -> str:
    """The damage stage chain at `balanced` as shipped (ONNX Runtime, gate off), with the segmenter in torch, and
    with its gate on (which runs in torch), on one clip: a table of its own, ratios against the first row."""
    clip = damage_clip(a)
    rows = {}
    for rt, name in ((None, "as shipped (ONNX Runtime, no gate)"), ("torch", "segmenter in torch, no gate"), ("torch+gate", "gate on (torch)")):
        rows[name] = run_measure(__file__, f"damage pipeline, balanced, {name}", ["--clip", str(clip), "--measure", "pipe", "--budget", "balanced",
                                                                                 *(["--damage-runtime", rt] if rt else [])])
    base = next(iter(rows.values()))["fps"]
    lines = [f"Damage stage chain at `balanced`, {a.seconds:g} s 720p pass, {a.intact:.0%} over intact facade "
             f"(`python benchmarks/flow_budget.py --gate-rows --intact {a.intact:g}`)", "",
             "| damage segmenter | frames/s | x shipped | damage IoU | component mIoU | condition F1 | damage inputs gated |", "|---|---|---|---|---|---|---|"]
    for k, r in rows.items():
        c = r.get("compute", {})
        gated = f"{c['damage_gated'] / c['damage_inputs']:.0%}" if c.get("damage_inputs") else "-"
        lines.append(f"| {k} | {r['fps']:.2f} | {r['fps'] / base:.2f} | {r['damage_iou']:.3f} | {r['component_miou']:.3f} | {r['condition_f1']:.3f} | {gated} |")
    return "\n".join(lines) + "\n"


def site_rows(a) -> dict:
    from benchmarks.safety_throughput import measure_naive  # noqa: F401  (run in the child)
    from pipeline.synth.site_data import site_video

    clip = CACHE / f"site_720p_{a.site_seconds:g}s_empty{a.empty:g}.mp4"
    if not clip.exists():
        site_video(clip, seconds=a.site_seconds, seed=5, fps=15, size=(1280, 720), empty=a.empty)
    rows = {"naive": run_measure(__file__, "site naive (2 models, full res)", ["--clip", str(clip), "--measure", "site-naive", "--n", "0",
                                                                                           "--every", str(a.naive_every)])}
    for b in BUDGETS:
        rows[f"flow {b}"] = run_measure(__file__, f"site flow, budget {b}", ["--clip", str(clip), "--measure", "site-flow", "--budget", b])
    for part in ("gate", "reuse") if a.ablate else ():
        rows[f"flow balanced, {part} only"] = run_measure(__file__, f"site flow, balanced, {part} only",
                                                          ["--clip", str(clip), "--measure", "site-flow", "--budget", "balanced", "--only", part])
    return rows


def markdown(res: dict) -> str:
    out = []
    if "damage" in res:
        rows = res["damage"]
        naive, full = rows["naive"]["fps"], rows["pipeline full"]["fps"]
        out += ["### Damage survey", "",
                "| row | frames/s | x naive | x full | damage IoU | component mIoU | condition F1 | frames reused | damage inputs gated | crops carried | condition FLOPs |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for k, r in rows.items():
            c = r.get("compute", {})
            ref = full if k.startswith("pipeline") else rows.get("flow full", {}).get("fps", float("nan"))
            q = (f"{r['damage_iou']:.3f} | {r['component_miou']:.3f} | {r['condition_f1']:.3f}" if "damage_iou" in r else "- | - | -")
            reused = f"{c['frames_reused'] / max(c['frames'], 1):.0%}" if c else "-"
            gated = f"{c['damage_gated'] / c['damage_inputs']:.0%}" if c.get("damage_inputs") else "-"
            crops = c.get("condition_crops", 0) + c.get("condition_carried", 0)
            carried = f"{c.get('condition_carried', 0) / crops:.0%}" if crops else "-"
            out.append(f"| {k} | {r['fps']:.2f} | {r['fps'] / naive:.2f} | {r['fps'] / ref:.2f} | {q} | {reused} | {gated} | {carried} | "
                       f"{c.get('condition_flops_share', 1.0) if c else '-'} |")
    if "site" in res:
        rows = res["site"]
        naive, full = rows["naive"]["fps"], rows["flow full"]["fps"]
        out += ["", "### Site safety", "", "| row | frames/s | x naive | x full | hard-hat status F1 | frames reused | frames gated |",
                "|---|---|---|---|---|---|---|"]
        for k, r in rows.items():
            c = r.get("compute", {})
            gated = f"{c['detector_gated'] / c['detector_inputs']:.0%}" if c.get("detector_inputs") else "-"
            out.append(f"| {k} | {r['fps']:.2f} | {r['fps'] / naive:.2f} | {r['fps'] / full:.2f} | {r.get('hardhat_f1', '-')} | "
                       f"{c['frames_reused'] / max(c['frames'], 1):.0%} | {gated} |" if c else
                       f"| {k} | {r['fps']:.2f} | 1.00 | {r['fps'] / full:.2f} | {r.get('hardhat_f1', '-')} | - | - |")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10, help="damage clip length (30 fps)")
    ap.add_argument("--site-seconds", type=float, default=20, help="site clip length (15 fps)")
    ap.add_argument("--intact", type=float, default=0.5, help="damage clip: share over intact facade")
    ap.add_argument("--empty", type=float, default=0.5, help="site clip: share of each 10 s with nobody on site")
    ap.add_argument("--naive-every", type=int, default=5)
    ap.add_argument("--flows", default="damage,site")
    ap.add_argument("--no-flow", action="store_true", help="damage: skip the whole-flow rows")
    ap.add_argument("--measure", choices=["naive", "pipe", "flow", "site-naive", "site-flow"])
    ap.add_argument("--clip", type=Path)
    ap.add_argument("--budget", choices=BUDGETS)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--ablate", action="store_true", help="also balanced without the damage gate; site: balanced with only its gate, and with only its reuse")
    ap.add_argument("--only", choices=["gate", "reuse"])
    ap.add_argument("--gate-rows", action="store_true", help="only the damage chain at balanced: as shipped, with the damage "
                    "segmenter in torch, and with its gate on (shipped off); writes results/flow_budget_gate_intact*.md")
    ap.add_argument("--damage-runtime", choices=["torch", "onnxruntime", "torch+gate"], help="pipe: the damage segmenter's "
                    "runtime instead of its YAML's; torch+gate also switches its gate on")
    ap.add_argument("--precision", choices=["fp32", "int8"], help="pipe / flow: both segmenters' precision instead of their YAMLs'")
    ap.add_argument("--damage-precision", choices=["fp32", "int8"], help="pipe / flow: the damage segmenter's precision alone")
    ap.add_argument("--float-rows", action="store_true", help="damage: also balanced (chain and flow) with float segmenters, "
                    "to see what `precision: int8` buys")
    ap.add_argument("--imgsz", type=int, help="site-flow: the detector's input size instead of its YAML's")
    ap.add_argument("--component-scale", type=float, help="pipe: the component segmenter's input scale instead of its YAML's")
    ap.add_argument("--fixed-sizes", type=int, help="ONNX Runtime's fixed-size graphs per model (pipeline.models.onnx.FIXED_SIZES; "
                    "0: the free-size graph only)")
    ap.add_argument("--sink-thread", type=int, choices=[0, 1], help="damage flow: registration, events and video on a thread "
                    "of their own (flows.damage_survey.SINK_THREAD, the default) or between batches")
    a = ap.parse_args()
    if a.sink_thread is not None:
        import flows.damage_survey as ds

        ds.SINK_THREAD = bool(a.sink_thread)
    if a.fixed_sizes is not None:
        import pipeline.models.onnx as ox

        ox.FIXED_SIZES = a.fixed_sizes
    if a.measure:
        from benchmarks.safety_throughput import measure_naive as site_naive

        r = {"naive": lambda: measure_naive(a.clip, a.every), "pipe": lambda: measure_pipe(a.clip, a.budget, a.only != "reuse", a.component_scale, a.precision,
                                                   a.damage_precision, a.damage_runtime),
             "flow": lambda: measure_damage_flow(a.clip, a.budget, a.precision, a.damage_precision), "site-naive": lambda: site_naive(a.clip, a.n, a.every),
             "site-flow": lambda: measure_site_flow(a.clip, a.budget, a.only, a.imgsz)}[a.measure]()
        report_result(r)
        return
    if a.gate_rows:
        md = gate_rows(a)
        print("\n" + md)
        (RESULTS / f"flow_budget_gate_intact{a.intact:g}.md").write_text(md)
        return
    out_json = RESULTS / "flow_budget.json"
    # a run of one flow keeps the other flow's last rows (each row set is internally consistent)
    res = json.loads(out_json.read_text()) if out_json.exists() else {}
    if "damage" in a.flows:
        res["damage"] = damage_rows(a)
    if "site" in a.flows:
        res["site"] = site_rows(a)
    md = markdown(res)
    print("\n" + md)
    RESULTS.mkdir(exist_ok=True)
    out_json.write_text(json.dumps(res, indent=2))
    (RESULTS / "flow_budget.md").write_text(md)


if __name__ == "__main__":
    main()
