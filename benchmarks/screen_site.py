"""The site detector's screen: how well it tells shifted input from clean, and what it costs.

    python benchmarks/screen_site.py [--frames 150] [--tag screen_site]
    python benchmarks/screen_site.py --no-gate --tag screen_site_nogate   # every frame through the deep layers

- clean: the synthetic site test split, through the shipped detector stage (gate on) and screen,
  exactly as the site-safety flow runs them;
- shifts: Gaussian noise and blur on those images, and real footage from ../shared/data/real when
  present (thermal facade frames, the site time-lapse, oblique site photos; the hard-hat val photos
  are listed too, but half of them calibrated the screen, so they are not a test);
- per shift: AUROC against the clean scores, and the share flagged at the shipped threshold;
- overhead: the screen's time over the detector's, per batch, on a synthetic 720p site clip with
  nobody on site half the time (so the gate stops some frames), both measured in this run.
Writes benchmarks/results/screen_site.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.core import Frame, FrameResult  # noqa: E402
from stages import load_stage  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
CONFIGS = ROOT / "stages" / "configs"


def stages(gate: bool = True):
    det_cfg = yaml.safe_load((CONFIGS / "safety_detector.yaml").read_text())
    det_cfg["model"] = str((CONFIGS / det_cfg["model"]).resolve())
    det_cfg["gate"] = str((CONFIGS / det_cfg["gate"]).resolve()) if gate and det_cfg.get("gate") else None
    det = load_stage({k: v for k, v in det_cfg.items() if v is not None})
    screen = load_stage(CONFIGS / "screen_safety.yaml")
    screen.attach([det])
    return det, screen


def scores(det, screen, images: list[np.ndarray], batch: int = 8, desc: str = "") -> np.ndarray:
    out = []
    for i in tqdm(range(0, len(images), batch), desc=desc, leave=False, disable=None):
        rs = [FrameResult(frame=Frame(index=j, image=im, time_s=0.0, source="bench")) for j, im in enumerate(images[i : i + batch])]
        det.process(rs)
        screen.process(rs)
        out += [r.screen["safety_detector"]["score"] for r in rs]
    return np.array([np.nan if s is None else s for s in out], float)


def video_frames(path: Path, limit: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or limit
    step, frames, k = max(1, n // limit), [], 0
    while len(frames) < limit:
        ok, f = cap.read()
        if not ok:
            break
        if k % step == 0:
            frames.append(f)
        k += 1
    return frames


def read_all(files, limit: int) -> list[np.ndarray]:
    return [im for f in sorted(files)[:limit] if (im := cv2.imread(str(f))) is not None]


def shifts(clean: list[np.ndarray], limit: int) -> dict[str, list[np.ndarray]]:
    rng = np.random.default_rng(0)
    out = {"noise (sigma 20 grey)": [np.clip(im + rng.normal(0, 20, im.shape), 0, 255).astype(np.uint8) for im in clean],
           "blur (7 px)": [cv2.GaussianBlur(im, (7, 7), 0) for im in clean]}
    real = {"real: thermal facade frames": read_all((REAL / "footage" / "facade_thermal_flight").glob("*.*"), limit),
            "real: site time-lapse frames": video_frames(REAL / "footage" / "site_timelapse.mp4", limit),
            "real: oblique site photos": read_all((REAL / "footage" / "site_oblique_photos").glob("*.*"), limit),
            "real: hard-hat val photos (half calibrated the screen)": read_all((REAL / "hardhat_workers" / "images" / "val").glob("*.jpg"), limit)}
    return out | {k: v for k, v in real.items() if v}


def overhead(det, screen, seconds: float, batch: int = 8) -> dict:
    from pipeline.synth.site_data import site_video
    from pipeline.sources import SourceOptions, open_source

    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "site.mp4"
        site_video(clip, seconds=seconds, seed=7, fps=15, size=(1280, 720), empty=0.5, progress=False)
        frames = list(open_source(clip, SourceOptions()))
    spent = {"detector": 0.0, "screen": 0.0}
    gated0 = det.backend.gate.n_gated if det.backend.gate else 0
    for i in range(0, len(frames), batch):
        rs = [FrameResult(frame=f) for f in frames[i : i + batch]]
        for name, stage in (("detector", det), ("screen", screen)):
            t0 = time.perf_counter()
            stage.process(rs)
            spent[name] += time.perf_counter() - t0
    gated = (det.backend.gate.n_gated if det.backend.gate else 0) - gated0
    return {"frames": len(frames), "frames_gated": gated, "seconds": {k: round(v, 3) for k, v in spent.items()},
            "screen / detector": round(spent["screen"] / spent["detector"], 4)}


def markdown(res: dict) -> str:
    lines = [f"### safety_detector screen ({res['n_clean']} clean synthetic site test images, threshold {res['threshold']})", "",
             f"clean flagged: {res['clean_flag_rate']:.1%}", "",
             "| shift | n | AUROC vs clean | flagged |", "|---|---|---|---|"]
    lines += [f"| {r['shift']} | {r['n']} | {r['auroc']:.3f} | {r['flag_rate']:.1%} |" for r in res["shifts"]]
    o = res.get("overhead")
    if o:
        lines += ["", f"overhead on a {o['frames']}-frame 720p site clip ({o['frames_gated']} frames stopped at the gate): "
                      f"screen {o['seconds']['screen']} s / detector {o['seconds']['detector']} s = **{o['screen / detector']:.1%}**"]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=150, help="clean test images, and real frames per real set")
    ap.add_argument("--overhead-seconds", type=float, default=10.0)
    ap.add_argument("--tag", default="screen_site")
    ap.add_argument("--no-gate", action="store_true", help="the detector without its 'nothing here' exit, so every "
                    "frame reaches the deep layers the screen reads (an ablation: the flow runs with the gate)")
    a = ap.parse_args()
    det, screen = stages(gate=not a.no_gate)
    clean = read_all((ROOT / "data" / "sites" / "images" / "test").glob("*.jpg"), a.frames)
    s_clean = scores(det, screen, clean, desc="clean")
    rows = []
    for name, imgs in shifts(clean, a.frames).items():
        s = scores(det, screen, imgs, desc=name)
        ok = ~np.isnan(s)
        auroc = roc_auc_score(np.r_[np.zeros(len(s_clean)), np.ones(ok.sum())], np.r_[s_clean, s[ok]])
        rows.append({"shift": name, "n": len(imgs), "auroc": round(float(auroc), 4),
                     "flag_rate": round(float(np.mean(s[ok] >= screen.cfg.threshold)), 4)})
        print(json.dumps(rows[-1]), flush=True)
    res = {"n_clean": len(clean), "threshold": screen.cfg.threshold,
           "clean_flag_rate": round(float(np.mean(s_clean >= screen.cfg.threshold)), 4), "shifts": rows}
    if a.overhead_seconds > 0:
        res["overhead"] = overhead(det, screen, a.overhead_seconds)
    out = ROOT / "benchmarks" / "results"
    (out / f"{a.tag}.json").write_text(json.dumps(res, indent=1))
    (out / f"{a.tag}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
