"""Train the site-safety YOLO-pose model (person + head point, hard hat, head).

    python -m pipeline.train.safety params.yaml train_safety      # from scratch, synthetic sites
    python -m pipeline.train.safety params.yaml finetune_safety   # + the real Hard Hat Workers train split

Fine-tuning mixes synthetic images back in: the real photos box heads but not persons, so without
them the model would learn that persons are background.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from pipeline.models.yolo import ultralytics
from pipeline.synth.site_data import dataset_yaml, real_hardhat_yolo
from pipeline.train.common import load_params


def _synth_data(p: dict, work: Path) -> Path:
    # the data folder may have moved since it was generated (another clone, `dvc pull`): point at where it is now
    synth = Path(p["data"]).resolve()
    return dataset_yaml(work, {"train": str(synth / "images" / "train"), "val": str(synth / "images" / "val")})


def _mixed_data(p: dict, work: Path) -> Path:
    synth = Path(p["data"])
    real = Path(p["real"]) if p.get("real") else None
    if real is None or not (real / "hardhat_workers").exists():
        print(f"real data not found at {real}; training on synthetic sites only")
        return _synth_data(p, work)
    rdata = yaml.safe_load(real_hardhat_yolo(real / "hardhat_workers", work / "real").read_text())
    real_train = sorted((work / "real" / "images" / "train").glob("*.jpg"))
    synth_train = sorted((synth / "images" / "train").glob("*.jpg"))[: int(len(real_train) * p.get("synth_share", 1.0))]
    # absolute, not resolved: ultralytics finds labels by path, and the real images are symlinks to the shared set
    (work / "train.txt").write_text("\n".join(str(x.absolute()) for x in real_train + synth_train) + "\n")
    return dataset_yaml(work, {"train": str(work / "train.txt"), "val": str(Path(rdata["path"]) / rdata["val"])})


def train(p: dict) -> Path:
    ul = ultralytics()
    out = Path(p["out"])
    with tempfile.TemporaryDirectory(prefix="inspectflow-yolo-") as tmp:
        work = Path(tmp)
        data = _mixed_data(p, work) if p.get("init") else _synth_data(p, work)
        model = ul.YOLO(p["init"] if p.get("init") else p["model"], task="pose")
        model.train(data=str(data), epochs=p["epochs"], imgsz=p["imgsz"], batch=p["batch"], lr0=p.get("lr0", 0.01),
                    device="cpu", amp=False, workers=p.get("workers", 2), seed=p.get("seed", 0), deterministic=True,
                    plots=False, project=str(work / "runs"), name="train", exist_ok=True, verbose=False,
                    mosaic=p.get("mosaic", 1.0), close_mosaic=p.get("close_mosaic", 2), patience=100,
                    warmup_epochs=p.get("warmup_epochs", 3.0),  # ultralytics' default eats short CPU schedules
                    val=p.get("val", True), fliplr=0.5, cache=False)
        best = work / "runs" / "train" / "weights" / ("best.pt" if p.get("val", True) else "last.pt")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = out.with_suffix(".tmp.pt")
        shutil.copyfile(best, tmp_out)
        tmp_out.replace(out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    train(load_params(sys.argv[1], sys.argv[2]))
