"""Does the classifier's own output margin help the supervised screen? (condition classifier)

    python benchmarks/screen_margin.py [--attacks cw fgsm deepfool pgd] [--strength paper]

CW and DeepFool stop just past the decision boundary, so their inputs leave the model unsure:
the top-1 minus top-2 log-probability is small. Per attack, supervised SVMs (as in
screen_auroc.py: fitted on the validation split, tested on the test split, successful attacks
only) on three feature sets: the shipped layer features (error and latent norm per layer), the
output margin alone, and both. Uses the adversarial sets cached by screen_auroc.py (computes
them if absent). Writes benchmarks/results/screen_margin.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import screen_auroc as S  # noqa: E402
from pipeline.screen import attacks as A  # noqa: E402
from pipeline.screen import detector as det  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attacks", nargs="+", default=["cw", "deepfool", "fgsm", "pgd"])
    ap.add_argument("--strength", default="paper")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--n-slow", type=int, default=100)
    a = ap.parse_args()
    torch.manual_seed(0)
    b = S.Bench("component_condition", a.n)
    x_val = torch.cat(list(b.t.tensors(b.t.images("val", a.n, seed=1)))).numpy()
    x_test = torch.cat(list(b.t.tensors(b.t.images("test", a.n, seed=2)))).numpy()
    F_val, F_test = b.feats(x_val)["plain"], b.feats(x_test)["plain"]

    def margin(x):
        s = np.sort(b.est.predict(x), 1)
        return np.c_[s[:, -1] - s[:, -2], s[:, -1]]

    sets = {"layer features": lambda F, x: F, "output margin": lambda F, x: margin(x),
            "layer features + margin": lambda F, x: np.c_[F, margin(x)]}
    rows = []
    for name in a.attacks:
        k = a.n_slow if name in A.SLOW else a.n
        xa_v, xa_t = b.attack(name, a.strength, x_val[:k], "val"), b.attack(name, a.strength, x_test[:k], "test")
        ok_v, ok_t = A.success(b.est, x_val[:k], xa_v), A.success(b.est, x_test[:k], xa_t)
        Fa_v, Fa_t = b.feats(xa_v[ok_v])["plain"], b.feats(xa_t[ok_t])["plain"]
        row = {"attack": name, "strength": a.strength, "adversarial_test": int(ok_t.sum())}
        for label, f in sets.items():
            svm = det.fit_supervised(f(F_val, x_val), f(Fa_v, xa_v[ok_v]))
            row[label] = S.auroc(det.score(svm, f(F_test, x_test)), det.score(svm, f(Fa_t, xa_t[ok_t])))
        rows.append(row)
        print(json.dumps(row), flush=True)
    md = ["| attack | strength | adversarial (test) | " + " | ".join(sets) + " |", "|---" * (3 + len(sets)) + "|"]
    md += [f"| {r['attack']} | {r['strength']} | {r['adversarial_test']} | " + " | ".join(f"{r[s]:.3f}" for s in sets) + " |"
           for r in rows]
    out = ROOT / "benchmarks" / "results"
    (out / "screen_margin.json").write_text(json.dumps(rows, indent=1))
    (out / "screen_margin.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
