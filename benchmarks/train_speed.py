"""Training-step time of the project's own trainers (segmentation U-Nets, condition classifier) in three
layouts/precisions, measured in the same run against plain fp32 NCHW, the trainers' layout before:

    python benchmarks/train_speed.py                 # all three models
    python benchmarks/train_speed.py --steps 12      # more steps per row

- fp32 NCHW: the baseline;
- fp32 channels-last: what the trainers now always do (same arithmetic, other memory layout);
- bf16 channels-last: `precision: bf16` in a params.yaml section (autocast; losses stay fp32).

Each step is forward, loss, backward and an AdamW update on a random batch of the size and crop the
params.yaml section trains with (a convolution's cost does not depend on the pixel values); data loading
is left out. Rows alternate, and each row is run twice, to spread out the noise of a shared machine.
Writes benchmarks/results/train_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from pipeline.models import checkpoint  # noqa: E402
from pipeline.sinks import atomic_json, atomic_write  # noqa: E402
from pipeline.train.common import autocast, channels_last, load_params, setup  # noqa: E402

MODELS = {"finetune_damage": "damage U-Net", "train_components": "component U-Net", "train_condition": "condition classifier"}
MODES = {"fp32 NCHW": ("fp32", False), "fp32 channels-last": ("fp32", True), "bf16 channels-last": ("bf16", True)}


def step_seconds(section: str, precision: str, nhwc: bool, steps: int) -> float:
    p = load_params(str(ROOT / "params.yaml"), section)
    device = setup(0)
    model = checkpoint.build(p["model"]).to(device)
    if nhwc:
        model = channels_last(model)
    side = p.get("crop", p.get("crop_size"))
    x = torch.rand(p["batch"], 3, side, side, device=device)
    n = len(p["classes"]) if "classes" in p else 4
    y = torch.randint(0, n, (p["batch"], side, side) if "crop" in p else (p["batch"],), device=device)
    if nhwc:
        x = channels_last(x)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    times = []
    for _ in range(steps + 2):  # the first two steps warm oneDNN's kernel caches
        t = time.perf_counter()
        with autocast(precision, device):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return sum(times[2:]) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "train_speed"))
    a = ap.parse_args()
    bf16 = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    rows = []
    for section, name in MODELS.items():
        runs: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(2):
            for mode, (precision, nhwc) in MODES.items():
                if precision == "bf16" and not bf16:
                    continue
                runs[mode].append(step_seconds(section, precision, nhwc, a.steps))
        base = sum(runs["fp32 NCHW"]) / 2
        for mode, t in runs.items():
            if t:
                mean = sum(t) / len(t)
                rows.append({"model": name, "section": section, "mode": mode, "s_per_step": round(mean, 4),
                             "runs": [round(v, 4) for v in t], "speedup": round(base / mean, 2)})
                print(f"{name:22s} {mode:20s} {mean:7.3f} s/step  {base / mean:5.2f}x", flush=True)
    lines = [f"### Training step, {torch.get_num_threads()} threads, batch and crop of each params.yaml section "
             f"(`python benchmarks/train_speed.py --steps {a.steps}`)", "",
             "| model | layout / precision | s / step (two runs) | x fp32 NCHW |", "|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['mode']} | {r['s_per_step']} ({' / '.join(map(str, r['runs']))}) | {r['speedup']} |"
              for r in rows]
    if not bf16:
        lines += ["", "bf16 rows skipped: this CPU has no native bf16 (AVX512-BF16 or AMX)."]
    atomic_json(Path(a.out + ".json"), {"rows": rows, "bf16_native": bool(bf16)})
    atomic_write(Path(a.out + ".md"), "\n".join(lines) + "\n")
    print(f"wrote {a.out}.md")


if __name__ == "__main__":
    main()
