"""The shipped multi-exit condition classifier against the full one, on the synthetic test crops, same run.

    python benchmarks/condition_ee.py [--threshold T]   (default: the threshold calibrated on val)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import f1_score

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.early_exit import tensors  # noqa: E402
from pipeline.models import checkpoint  # noqa: E402
from pipeline.train.condition import read_crops  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float)
    a = ap.parse_args()
    w = ROOT / "data" / "weights"
    full, _ = checkpoint.load(w / "condition.pt", "condition_classification")
    ee, meta = checkpoint.load(w / "condition_ee.pt", "condition_classification")
    if a.threshold:
        ee.cfg.threshold = a.threshold
    x, y = tensors(read_crops(ROOT / "data" / "synth", "test"), False)
    torch.set_num_threads(2)
    with torch.no_grad():
        t = time.perf_counter()
        pf = torch.cat([full(x[i : i + 256]).argmax(1) for i in range(0, len(y), 256)])
        t_full = time.perf_counter() - t
        t = time.perf_counter()
        outs = [ee.infer(x[i : i + 256]) for i in range(0, len(y), 256)]
        t_ee = time.perf_counter() - t
    pe = torch.cat([o[0] for o in outs]).argmax(1)
    where = torch.cat([o[1] for o in outs]).numpy()
    flops = np.array(meta["meta"]["flops_per_exit"])
    share = float(flops[where].mean() / flops[-1])
    for name, p in (("full (condition.pt)", pf), (f"ZTW exits, threshold {ee.cfg.threshold}", pe)):
        print(f"{name:34s} accuracy {float((p == y).float().mean()):.4f}  macro-F1 {f1_score(y, p, average='macro'):.4f}")
    print(f"exits used: {np.bincount(where, minlength=ee.n_exits).tolist()}  mean FLOPs {share:.3f} of full")
    print(f"wall clock, {len(y)} crops in batches of 256: full {t_full:.2f} s, early exit {t_ee:.2f} s ({t_full / t_ee:.2f}x)")


if __name__ == "__main__":
    main()
