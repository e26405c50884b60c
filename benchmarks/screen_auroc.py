"""AUROC of the shipped layer-wise AE screens against attacks and shifts, and their overhead.

    python benchmarks/screen_auroc.py [--n 400] [--n-damage 80] [--n-slow 400] [--n-slow-damage 24] [--targets component_condition damage_segmentation]

Per target (the condition classifier and the damage segmenter, seen as "damage present?"):
- attacks from ART (FGSM, BIM, PGD, CW-L2, DeepFool) at the paper's strength and a weaker one,
  on synthetic test inputs; only attacks that changed the decision count as adversarial;
- three settings, as in the paper's table: unsupervised (the shipped detector: a Gaussian mixture
  for the condition screen, an Isolation Forest for the damage screen), supervised on the same attack
  (SVM, CV ROC-AUC, fitted on the validation split), and supervised on FGSM tested on the others;
  each supervised setting on error + norm, on those plus the latent codes, and on whichever of the
  two the validation split's CV ROC-AUC prefers;
- shifts: Gaussian noise, blur, and real photos from ../shared/data/real (hard-hat workers,
  thermal facade frames) when present;
- overhead: the screen stage's time as a share of its target stage's time, in the shipped flow.
Writes benchmarks/results/screen_auroc.{json,md} (--tag to name it otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.models.checkpoint import file_sha  # noqa: E402
from pipeline.screen import attacks as A  # noqa: E402
from pipeline.screen import detector as det  # noqa: E402
from pipeline.screen.model import ScreenModel  # noqa: E402
from pipeline.screen.targets import Target, full_depth  # noqa: E402
from pipeline.screen.train import collect  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
CACHE = ROOT / "benchmarks" / ".cache" / "screen_attacks"
# supervised detectors on error + norm, on those plus the latent codes, and (an early-exit target) on
# error + norm plus what its internal classifiers say (pipeline/screen/exits.py)
FEATURES = {"plain": "", "codes": "_codes", "exits": "_exits"}
SCREENS = {"component_condition": ROOT / "data/weights/screen_condition.pt",
           "damage_segmentation": ROOT / "data/weights/screen_damage.pt"}


def auroc(clean: np.ndarray, bad: np.ndarray) -> float | None:
    clean, bad = clean[~np.isnan(clean)], bad[~np.isnan(bad)]
    if len(bad) < 5:
        return None
    return round(float(roc_auc_score(np.r_[np.zeros(len(clean)), np.ones(len(bad))], np.r_[clean, bad])), 4)


class Bench:
    def __init__(self, kind: str, n: int):
        self.t = Target(kind)
        self.screen = ScreenModel.load(SCREENS[kind])
        self.n = n
        self.est = A.estimator(self.t.classifier(), self.t.input_size, 4 if kind == "component_condition" else 2)

    def feats(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Full-depth layer features (exits off), as the AEs and detectors were trained: what the
        shipped detectors read; per layer error and latent norm ("plain"); those plus the latent
        codes; and (an early-exit target) those plus each exit's confidences."""
        with full_depth(self.t.model):
            calls = collect(self.t.model, self.screen.layers, self.t.run,
                            [torch.from_numpy(x[i : i + 64]) for i in range(0, len(x), 64)], 8)
        F = {"shipped": self.screen.layer_features(calls)[0],
             "plain": self.screen.layer_features(calls, codes=False, exits=False)[0],
             "codes": self.screen.layer_features(calls, codes=True, exits=False)[0]}
        if hasattr(self.t.model, "forward_all"):
            F["exits"] = self.screen.layer_features(calls, codes=False, exits=True)[0]
        return F

    def unsup(self, F: dict[str, np.ndarray]) -> np.ndarray:
        return det.score(self.screen.detectors[len(self.screen.layers)], F["shipped"])

    def unsup_kind(self) -> str:
        last = self.screen.detectors[len(self.screen.layers)].steps[-1][1]
        return "iforest" if isinstance(last, IsolationForest) else "gmm"

    def attack(self, name: str, strength: str, x: np.ndarray, split: str) -> np.ndarray:
        """Adversarial inputs, cached under benchmarks/.cache so detector settings can be rerun cheaply."""
        f = CACHE / f"{self.t.kind}_{file_sha(self.t.stage.cfg.model)[:10]}_{name}_{strength}_{split}_{len(x)}.npy"
        if f.exists():
            return np.load(f)
        xa = A.attack(name, self.est, x, strength)
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, xa)
        return xa

    def deployed(self, x: np.ndarray) -> np.ndarray:
        """Scores with the model's early exits on: samples that exit early are judged on fewer layers."""
        calls = collect(self.t.model, self.screen.layers, self.t.run, [torch.from_numpy(x[i : i + 64]) for i in range(0, len(x), 64)], 8)
        return self.screen.scores(calls)


def fit_feature_sets(F_clean: dict, F_adv: dict) -> tuple[dict, str]:
    """A supervised SVM per feature set, and the set the validation split's CV ROC-AUC prefers: the
    feature set is one more hyperparameter, chosen as C and gamma are."""
    fits = {k: det.fit_supervised_cv(F_clean[k], F_adv[k]) for k in FEATURES if k in F_clean}
    return {k: svm for k, (svm, _) in fits.items()}, max(fits, key=lambda k: fits[k][1])


def run_target(kind: str, n: int, attacks: list[str], strengths: list[str], n_slow: int) -> dict:
    b = Bench(kind, n)
    x_val = torch.cat(list(b.t.tensors(b.t.images("val", n, seed=1)))).numpy()
    x_test = torch.cat(list(b.t.tensors(b.t.images("test", n, seed=2)))).numpy()
    F_val, F_test = b.feats(x_val), b.feats(x_test)
    s_clean, d_clean = b.unsup(F_test), b.deployed(x_test)
    # the shipped unsupervised detector's kind, refitted on this run's clean val split with and without the
    # exits' features, so the two differ in the features alone
    refit = {k: det.fit_unsupervised(F_val[k], kind=b.unsup_kind()) for k in ("plain", "exits") if k in F_val}
    r_clean = {k: det.score(m, F_test[k]) for k, m in refit.items()}
    rows, adv_val, adv_test = [], {}, {}
    for name in attacks:
        for strength in strengths:
            t0 = time.perf_counter()
            xv, xt = (x_val[:n_slow], x_test[:n_slow]) if name in A.SLOW else (x_val, x_test)
            xa_v, xa_t = b.attack(name, strength, xv, "val"), b.attack(name, strength, xt, "test")
            ok_v, ok_t = A.success(b.est, xv, xa_v), A.success(b.est, xt, xa_t)
            d = (xa_t - xt)[ok_t].reshape(int(ok_t.sum()), int(np.prod(xt.shape[1:]))) / A.GREY  # explicit width: no success is 0 rows
            adv_val[(name, strength)], adv_test[(name, strength)] = b.feats(xa_v[ok_v]), b.feats(xa_t[ok_t])
            row = {"attack": name, "strength": strength, "success_rate": round(float(ok_t.mean()), 3),
                   "n_adv_test": int(ok_t.sum()), "seconds": round(time.perf_counter() - t0, 1),
                   "n_attacked": len(xt),
                   # medians over successful attacks, in grey levels (L2 over all pixels and channels)
                   "linf_grey": round(float(np.median(np.abs(d).max(1))), 1) if len(d) else None,
                   "l2_grey": round(float(np.median(np.linalg.norm(d, axis=1))), 1) if len(d) else None,
                   "unsupervised": auroc(s_clean, b.unsup(adv_test[(name, strength)])) if ok_t.any() else None,
                   "unsupervised_deployed": auroc(d_clean, b.deployed(xa_t[ok_t])) if ok_t.any() else None}
            for k, m in refit.items():
                row[f"unsupervised_refit_{k}"] = auroc(r_clean[k], det.score(m, adv_test[(name, strength)][k])) if ok_t.any() else None
            if ok_v.sum() >= 10 and ok_t.sum() >= 5:
                svms, pick = fit_feature_sets(F_val, adv_val[(name, strength)])
                for kind_f, col in FEATURES.items():
                    if kind_f not in svms:
                        continue
                    row[f"supervised_same{col}"] = auroc(det.score(svms[kind_f], F_test[kind_f]),
                                                         det.score(svms[kind_f], adv_test[(name, strength)][kind_f]))
                row["supervised_same_cv"], row["features_same_cv"] = row[f"supervised_same{FEATURES[pick]}"], pick
            rows.append(row)
            print(json.dumps(row), flush=True)
    # supervised on FGSM (each strength), tested on every other attack at that strength
    for strength in strengths:
        key = ("fgsm", strength)
        if key not in adv_val or len(adv_val[key]["plain"]) < 10:
            continue
        svms, pick = fit_feature_sets(F_val, adv_val[key])
        for row in rows:
            if row["strength"] == strength and row["n_adv_test"] >= 5:
                for kind_f, col in FEATURES.items():
                    if kind_f not in svms:
                        continue
                    row[f"supervised_from_fgsm{col}"] = auroc(det.score(svms[kind_f], F_test[kind_f]),
                                                              det.score(svms[kind_f], adv_test[(row["attack"], strength)][kind_f]))
                row["supervised_from_fgsm_cv"], row["features_from_fgsm_cv"] = row[f"supervised_from_fgsm{FEATURES[pick]}"], pick
    shifts = {"noise (sigma 20 grey)": A.noise(x_test),
              "blur (7 px)": torch.cat(list(b.t.tensors(A.blur(b.t.images("test", n, seed=2))))).numpy()}
    for name, imgs in real_photos().items():
        shifts[name] = torch.cat(list(b.t.tensors(b.t.resize(imgs)))).numpy()
    shift_rows = []
    for k, v in shifts.items():
        Fs = b.feats(v)
        shift_rows.append({"shift": k, "n": len(v), "unsupervised": auroc(s_clean, b.unsup(Fs)),
                           **{f"unsupervised_refit_{f}": auroc(r_clean[f], det.score(m, Fs[f])) for f, m in refit.items()}})
    for r in shift_rows:
        print(json.dumps(r), flush=True)
    return {"target": kind, "n_clean_test": len(x_test), "attacks": rows, "shifts": shift_rows,
            "clean_flag_rate_at_0.995": round(float(np.nanmean(d_clean >= 0.995)), 4)}


def real_photos(limit: int = 100) -> dict[str, list[np.ndarray]]:
    out = {}
    hh = sorted((REAL / "hardhat_workers" / "images" / "val").glob("*.jpg"))[:limit]
    th = sorted((REAL / "footage" / "facade_thermal_flight").glob("*.*"))[:limit]
    for name, files in (("real: hard-hat worker photos", hh), ("real: thermal facade frames", th)):
        imgs = [im for f in files if (im := cv2.imread(str(f))) is not None]
        if imgs:
            out[name] = imgs
    return out


def overhead(frames: int = 24) -> dict:
    """Screen time / its target stage's time, per stage, in the shipped damage-survey flow. The clip
    goes through twice: the first pass pays one-time costs (kernel set-up for each new input shape,
    the first detector calls) that a flight of thousands of frames does not; the second is what a
    flow spends per frame from then on. Both are reported."""
    from pipeline.core import FrameResult
    from pipeline.runner import Pipeline, load_flow_config
    from pipeline.sources import SourceOptions, open_source
    from pipeline.synth.video import facade_video

    clip = ROOT / "benchmarks" / "results" / ".screen_clip.mp4"
    if not clip.exists():
        facade_video(clip, seconds=frames / 30 + 0.2, seed=3)
    cfg, base = load_flow_config(ROOT / "flows" / "configs" / "damage-survey.yaml")
    pipe = Pipeline.from_config(cfg, base)
    key = lambda s: s.type_name + (f":{s.cfg.target}" if s.type_name == "screen" else "")  # noqa: E731
    fr = list(open_source(clip, SourceOptions(max_frames=frames)))
    out = {}
    for name in ("first pass", "second pass"):
        spent = {key(s): 0.0 for s in pipe.stages}
        for i in range(0, len(fr), cfg.batch_size):
            results = [FrameResult(frame=f) for f in fr[i : i + cfg.batch_size]]
            for s in pipe.stages:
                t0 = time.perf_counter()
                s.process(results)
                spent[key(s)] += time.perf_counter() - t0
        row = {"seconds": {k: round(v, 3) for k, v in spent.items()}}
        for k in spent:
            if k.startswith("screen:"):
                row[f"{k} / {k[7:]}"] = round(spent[k] / spent[k[7:]], 4)
        row["screens / whole flow"] = round(sum(v for k, v in spent.items() if k.startswith("screen:")) / sum(spent.values()), 4)
        out[name] = row
    print(json.dumps(out), flush=True)
    return out


def markdown(res: dict) -> str:
    f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    cvf = lambda r, k: f"{f(r[f'supervised_{k}_cv'])} ({r[f'features_{k}_cv']})" if f"supervised_{k}_cv" in r else "–"  # noqa: E731
    lines = []
    for t in res["targets"]:
        exits = any("unsupervised_refit_exits" in r for r in t["attacks"])
        lines += [f"### {t['target']} ({t['n_clean_test']} clean test inputs{', run ' + t['run'] if 'run' in t else ''})", "",
                  "Unsupervised: the shipped detector, with the model's exits off and on"
                  + ("; and its kind refitted on this run's clean val split on error + norm, and on those plus the exits' "
                     "confidences (`pipeline/screen/exits.py`)" if exits else "") + ".", "",
                  "| attack | strength | attacked | success | median L-inf / L2 (grey levels) | shipped | shipped, exits on "
                  + ("| refit | refit, + exits |" if exits else "|"),
                  "|---|---|---|---|---|---|---|" + ("---|---|" if exits else "")]
        for r in t["attacks"]:
            lines.append(f"| {r['attack']} | {r['strength']} | {r['n_attacked']} | {r['success_rate']:.2f} | "
                         f"{r['linf_grey']} / {r['l2_grey']} | {f(r['unsupervised'])} | {f(r['unsupervised_deployed'])} |"
                         + (f" {f(r.get('unsupervised_refit_plain'))} | {f(r.get('unsupervised_refit_exits'))} |" if exits else ""))
        sets = ["", "_codes"] + (["_exits"] if exits else [])
        head = ["error + norm", "+ codes"] + (["+ exits"] if exits else []) + ["by CV"]
        lines += ["", "Supervised (SVM, CV ROC-AUC): trained and tested on the same attack | trained on FGSM, tested on this one.", "",
                  "| attack | strength | " + " | ".join(f"same: {h}" for h in head) + " | " + " | ".join(f"FGSM: {h}" for h in head) + " |",
                  "|---|---|" + "---|" * (2 * len(head))]
        for r in t["attacks"]:
            same = [f(r.get(f"supervised_same{c}")) for c in sets] + [cvf(r, "same")]
            fg = [f(r.get(f"supervised_from_fgsm{c}")) for c in sets] + [cvf(r, "from_fgsm")]
            lines.append(f"| {r['attack']} | {r['strength']} | " + " | ".join(same) + " | " + " | ".join(fg) + " |")
        lines += ["", "| shift | n | unsupervised |" + (" refit | refit, + exits |" if exits else ""),
                  "|---|---|---|" + ("---|---|" if exits else "")]
        lines += [f"| {r['shift']} | {r['n']} | {f(r['unsupervised'])} |"
                  + (f" {f(r.get('unsupervised_refit_plain'))} | {f(r.get('unsupervised_refit_exits'))} |" if exits else "")
                  for r in t["shifts"]]
        lines += ["", f"clean test inputs flagged at threshold 0.995: {t['clean_flag_rate_at_0.995']:.1%}",
                  "AUROCs are over successful attacks only; – means fewer than 5 of them.", ""]
    if "overhead" in res:
        lines += ["### overhead in the damage-survey flow", "", "```", json.dumps(res["overhead"], indent=1), "```"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400, help="clean condition crops per split")
    ap.add_argument("--n-damage", type=int, default=80, help="clean facade images per split")
    ap.add_argument("--targets", nargs="+", default=list(SCREENS), help="`none`: overhead only")
    ap.add_argument("--attacks", nargs="+", default=list(A.ATTACKS))
    ap.add_argument("--strengths", nargs="+", default=["paper", "weak"])
    ap.add_argument("--n-slow", type=int, default=400, help=f"condition crops per split for the slow attacks ({', '.join(A.SLOW)})")
    ap.add_argument("--n-slow-damage", type=int, default=24, help="facade images per split for the slow attacks")
    ap.add_argument("--no-overhead", action="store_true")
    ap.add_argument("--tag", default="screen_auroc", help="results file stem under benchmarks/results")
    a = ap.parse_args()
    torch.manual_seed(0)
    cond = {"component_condition": True, "damage_segmentation": False}
    out = ROOT / "benchmarks" / "results"
    # a run of some targets keeps the others' last results (each target's table is internally consistent)
    last = json.loads((out / f"{a.tag}.json").read_text()) if (out / f"{a.tag}.json").exists() else {"targets": []}
    now = time.strftime("%Y-%m-%d", time.gmtime())
    ran = {k: {**run_target(k, a.n if cond[k] else a.n_damage, a.attacks, a.strengths, a.n_slow if cond[k] else a.n_slow_damage),
               "run": now} for k in a.targets if k != "none"}
    res = {**last, "targets": [ran.pop(t["target"], t) for t in last["targets"]] + list(ran.values())}
    if not a.no_overhead:
        res["overhead"] = overhead()
    (out / f"{a.tag}.json").write_text(json.dumps(res, indent=1))
    (out / f"{a.tag}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
