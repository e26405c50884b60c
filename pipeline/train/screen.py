"""Train the layer-wise autoencoder screens for the stages named in params (DVC `train_screen`).

    python -m pipeline.train.screen params.yaml train_screen

Per target: AEs on clean synthetic train inputs, the unsupervised detector on half of the clean
validation inputs, the clean score table on the other half. Attacks are not needed here; the
supervised variant lives in benchmarks/screen_auroc.py."""

from __future__ import annotations

import sys

import tempfile
from pathlib import Path

from pipeline.screen import detector as det
from pipeline.screen.exits import check_layers
from pipeline.screen.targets import ROOT, Target, fingerprint, full_depth
from pipeline.screen.train import collect, fit
from pipeline.train.common import load_params, setup


def train_target(kind: str, t: dict, p: dict) -> None:
    target = Target(kind, t.get("config"), t.get("real"), t.get("data"))
    layers = t.get("layers") or target.layers
    if t.get("exits", False):
        check_layers(target.model, layers, f"the {kind} model")
    grid = p.get("grid", 8)
    with full_depth(target.model):
        train = collect(target.model, layers, target.run, target.tensors(target.images("train", t["train"], p["seed"])), grid, f"{kind} train")
        val = collect(target.model, layers, target.run, target.tensors(target.images("val", t.get("val"), p["seed"])), grid, f"{kind} val")
        if t.get("flow_clip"):
            val += flow_calls(target, layers, grid, t["flow_clip"])
    detector = t.get("detector", p.get("detector", "gmm"))
    screen = fit(layers, train, val, fingerprint(target.stage), p["variant"], p["latent"], p["hidden"],
                 p["epochs"], p["lam"], p.get("codes", False), p["seed"],
                 meta={"variant": p["variant"], "train": t["train"], "grid": grid, "detector": detector},
                 detector=detector, exits=t.get("exits", False))
    screen.save(t["out"])
    print(f"{kind}: layers {layers} -> {t['out']}")


def flow_calls(target: Target, layers: list[str], grid: int, clip: dict) -> list[dict]:
    """Activations from the stage as the flow runs it, on a clean synthetic drone clip. The
    condition stage's crops come from predicted component masks on perspective frames, which
    differ from the dataset's crops; calibrating on them keeps clean flights from being flagged."""
    from pipeline.runner import Pipeline
    from pipeline.sources import SourceOptions, open_source
    from pipeline.synth.video import facade_video
    from stages import load_stage

    pipe = Pipeline([*(load_stage(ROOT / "stages" / "configs" / f"{n}.yaml") for n in clip.get("before", [])), target.stage])
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "clip.mp4"
        facade_video(path, clip["seconds"], clip["seed"], progress=False)
        frames = list(open_source(path, SourceOptions(stride=clip.get("stride", 1))))

    return collect(target.model, layers, pipe, [frames[i : i + 4] for i in range(0, len(frames), 4)], grid, "flow clip")


def main(p: dict, section: str = "train_screen") -> None:
    # a target may pick its own detector; every choice is checked before any training starts
    for where, d in [(f"{section}.detector", p.get("detector", "gmm"))] + [
            (f"{section}.targets.{k}.detector", t["detector"]) for k, t in p["targets"].items() if "detector" in t]:
        if d not in det.UNSUPERVISED:
            raise SystemExit(f"params {where}: {d!r} is not one of {', '.join(det.UNSUPERVISED)}")
    setup(p.get("seed", 0))
    for kind, t in p["targets"].items():
        train_target(kind, t, p)


if __name__ == "__main__":
    main(load_params(sys.argv[1], sys.argv[2]), sys.argv[2])
