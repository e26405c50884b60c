"""The damage screen beside the float and the 8-bit damage segmenter, in the same run.

    python benchmarks/screen_int8.py [--passes 3 21 11 29 37 41 43 47] [--no-table]

Every frame of the 10 s 720p bench pass (half over intact wall) goes through the damage segmenter and the shipped
damage screen, first in float (the baseline), then as the 8-bit graph, whose calls the screen ranks against its
8-bit table (`int8_calibration`; `--no-table`: against the float one, as before that table existed). Reported:
the share of clean frames flagged at the screen's threshold; the same pass with Gaussian noise (sigma 20, every
third frame) and the real thermal frames (skipped when absent): AUROC against the clean frames and the share
flagged. `--passes` adds more clean synthetic passes (benchmarks/registration.py's clips).
Writes benchmarks/results/screen_int8.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / "stages" / "configs"
THERMAL = ROOT.parent / "shared" / "data" / "real" / "footage" / "facade_thermal_flight"


def screen_pipe(precision: str, table: bool):
    from pipeline.config import load_yaml
    from pipeline.runner import Pipeline
    from stages import load_stage

    dmg = load_stage({**load_yaml(CONFIGS / "damage_segmentation.yaml"), "precision": precision}, CONFIGS)
    screen = load_stage(CONFIGS / "screen_damage.yaml")
    screen.attach([dmg])
    if not table:
        screen.screen.calibrations = {}  # the 8-bit calls ranked against the float table
    dmg.prepare()
    return Pipeline([dmg, screen]), screen


def scores(pipe, frames) -> np.ndarray:
    out = []
    for i in range(0, len(frames), 4):
        out += [r.screen["damage_segmentation"]["score"] for r in pipe(frames[i : i + 4])]
    return np.array([np.nan if s is None else s for s in out], float)


def main() -> None:
    from sklearn.metrics import roc_auc_score

    from benchmarks.registration import clip_for
    from pipeline.core import Frame
    from pipeline.imageio import read_image
    from pipeline.sources import open_source
    from pipeline.synth.video import facade_video

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, nargs="*", default=[], help="seeds of more clean 10 s passes")
    ap.add_argument("--no-table", action="store_true", help="rank the 8-bit calls against the float table")
    a = ap.parse_args()
    clip = ROOT / "benchmarks" / ".cache" / "pass_720p_10s_intact0.5.mp4"  # benchmarks/int8.py's pass
    if not clip.exists():
        facade_video(clip, seconds=10, seed=11, fps=30, size=(1280, 720), intact=0.5)
    clean = list(open_source(clip))
    rng = np.random.default_rng(0)
    noisy = [Frame(f.index, np.clip(f.image + rng.normal(0, 20, f.image.shape), 0, 255).astype(np.uint8), f.time_s, f.source)
             for f in clean[::3]]
    thermal = ([Frame(i, read_image(p), 0.0, "thermal") for i, p in enumerate(sorted(THERMAL.glob("*.jpg")))]
               if THERMAL.exists() else [])
    more = {s: list(open_source(clip_for(s, 10))) for s in a.passes}
    res = {}
    for precision in ("fp32", "int8"):
        pipe, screen = screen_pipe(precision, not a.no_table)
        thr = screen.cfg.threshold
        c, n = scores(pipe, clean), scores(pipe, noisy)
        auc = lambda x, y: float(roc_auc_score(np.r_[np.zeros(len(x)), np.ones(len(y))], np.r_[x, y]))  # noqa: E731
        r = {"clean_flagged": int((c >= thr).sum()), "clean_frames": len(c), "noise_auroc": auc(c, n),
             "noise_flagged": float(np.mean(n >= thr))}
        if thermal:
            t = scores(pipe, thermal)
            r |= {"thermal_auroc": auc(c, t), "thermal_flagged": float(np.mean(t >= thr))}
        r["passes_flagged"] = {s: int((scores(pipe, f) >= thr).sum()) for s, f in more.items()}
        r["passes_frames"] = sum(len(f) for f in more.values())
        res[precision] = r
        print(precision, json.dumps(r), flush=True)
    base = res["fp32"]
    rows = ["| damage segmenter | clean frames flagged | noise: AUROC / flagged | thermal: AUROC / flagged | more clean passes: flagged |",
            "|---|---|---|---|---|"]
    for p, r in res.items():
        th = f"{r['thermal_auroc']:.3f} / {r['thermal_flagged']:.1%}" if "thermal_auroc" in r else "skipped"
        rows.append(f"| {p}{' (float table)' if p == 'int8' and a.no_table else ''} | {r['clean_flagged']} of {r['clean_frames']} | "
                    f"{r['noise_auroc']:.3f} ({r['noise_auroc'] / base['noise_auroc']:.3f}x) / {r['noise_flagged']:.1%} | {th} | "
                    f"{sum(r['passes_flagged'].values())} of {r['passes_frames']} |")
    table = "\n".join(rows) + "\n"
    print(table)
    out = ROOT / "benchmarks" / "results" / f"screen_int8{'_float_table' if a.no_table else ''}"
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
