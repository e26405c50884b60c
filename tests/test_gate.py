""""Nothing here" gates: a gated model answers exactly as the plain one for inputs that pass, and
"nothing" for inputs that stop; the shipped gates fit the shipped weights; synthetic clips have the
empty stretches the gates are measured on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adaptive.gate import CellGate, GatedSegmenter, YoloGate
from pipeline.errors import ConfigError, WeightsError
from tests.conftest import ROOT

W = ROOT / "data" / "weights"


def _seg():
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    return smp.Unet(encoder_name="timm-mobilenetv3_large_100", encoder_weights=None, encoder_depth=5,
                    decoder_channels=[32, 16, 16, 8, 8], classes=4).eval()


def test_gated_segmenter_equals_the_plain_model_for_inputs_that_pass():
    seg = _seg()
    gate = CellGate(112).eval()
    g = GatedSegmenter(seg, gate, 4, 0.0).eval()
    names = {n for n, _ in g.named_modules()}
    assert "encoder.model.blocks.1" in names and not any(n.startswith("fm.") for n in names)  # taps keep working
    x = torch.randn(3, 3, 64, 96)
    with torch.no_grad():
        plain = seg(x)
        assert torch.allclose(g(x), plain, atol=1e-5) and g.last_exit.tolist() == [1, 1, 1]
        # stop the middle input only: its answer is background, the others are untouched
        p = g.last_gate.clone()
        g.threshold = float(p[1]) + 1e-6 if p[1] < p.max() else 2.0
        out = g(x)
    keep = g.last_exit.bool()
    assert torch.allclose(out[keep], plain[keep], atol=1e-5)
    assert (out[~keep].argmax(1) == 0).all() and (~keep).any()


def test_gate_block_must_exist_and_encoder_must_run_block_by_block():
    with pytest.raises(ConfigError, match="block 9"):
        GatedSegmenter(_seg(), CellGate(112), 9, 0.5)
    with pytest.raises(ConfigError, match="timm MobileNet"):
        GatedSegmenter(torch.nn.Conv2d(3, 4, 1), CellGate(8), 0, 0.5)


def test_yolo_gate_keeps_ultralytics_results_and_stops_empty_frames():
    from pipeline.models.yolo import load_yolo
    from pipeline.synth.site import random_scene, render

    img = render(random_scene(np.random.default_rng(3), (416, 416)))
    plain = load_yolo(W / "safety.pt").predict(img, imgsz=416, conf=0.25, verbose=False)[0]
    y = load_yolo(W / "safety.pt")
    gate = YoloGate(y, CellGate(128).eval(), 4, 0.0)
    same = y.predict(img, imgsz=416, conf=0.25, verbose=False)[0]
    assert len(plain.boxes) > 0 and torch.allclose(same.boxes.xyxy, plain.boxes.xyxy, atol=1e-3)
    gate.threshold = 2.0  # nothing passes: ultralytics sees all-zero predictions and finds nobody
    none = y.predict([img, img], imgsz=416, conf=0.25, verbose=False)
    assert [len(r.boxes) for r in none] == [0, 0] and gate.n_gated == 2 and gate.n_inputs == 3
    with pytest.raises(ConfigError, match="layer 40"):
        YoloGate(load_yolo(W / "safety.pt"), CellGate(128), 40, 0.5)


@pytest.mark.parametrize("stage,gate", [("damage_segmentation", "damage_gate.pt"), ("safety_detector", "safety_gate.pt")])
def test_shipped_gates_fit_the_shipped_weights_and_refuse_others(tmp_path, stage, gate):
    from stages import load_stage

    import yaml

    cfg = ROOT / "stages" / "configs" / f"{stage}.yaml"
    base = yaml.safe_load(cfg.read_text()) | {"model": str(W / yaml.safe_load(cfg.read_text())["model"].split("/")[-1]),
                                               "gate": str(W / gate)}  # the damage gate ships switched off
    base.pop("runtime", None)  # a gate runs in torch (the damage config ships with onnxruntime)
    st = load_stage(base)
    assert st.counters() == {} and st.cfg.gate.name == gate
    other = tmp_path / "other.pt"
    other.write_bytes(st.cfg.model.read_bytes() + b"\0")  # same model, other bytes: another sha
    spec = base | {"model": str(other)}
    with pytest.raises(WeightsError, match="retrain"):
        load_stage(spec)
    with pytest.raises(WeightsError, match="do not exist"):
        load_stage(base | {"gate": str(tmp_path / "none.pt")})


def test_synthetic_clips_have_empty_stretches(tmp_path):
    from pipeline.synth.site_data import site_video
    from pipeline.synth.video import facade_video, frame_labels

    facade_video(tmp_path / "intact.mp4", seconds=1, seed=3, fps=5, size=(320, 180), progress=False, intact=1.0)
    labels = dict(np.load(tmp_path / "intact.labels.npz"))
    assert not labels["damage"].any() and (labels["instance_state"] == 0).all()
    assert not frame_labels(labels, 2)[2].any()
    # half intact is half of the facade's stretches, not a coin flip for the whole of a short pass
    for seed in (3, 4, 5):
        facade_video(tmp_path / "half.mp4", seconds=1, seed=seed, fps=2, size=(320, 180), progress=False, intact=0.5)
        labels = dict(np.load(tmp_path / "half.labels.npz"))
        assert labels["damage"].any() and (labels["instance_state"] == 0).any()
    site_video(tmp_path / "site.mp4", seconds=10, seed=1, fps=1, size=(320, 180), progress=False, empty=0.3)
    heads = [len(json.loads(x)["heads"]) for x in (tmp_path / "site.labels.jsonl").read_text().splitlines()]
    assert heads[7:] == [0, 0, 0] and sum(heads[:7]) > 0


def test_intact_passes_are_short_undamaged_passes_over_a_facade_each():
    from pipeline.train.gate import clip_frames, intact_passes

    train, val = intact_passes({"train": 2, "val": 1, "seconds": 1, "fps": 2, "seed": 300}, 0.25)
    assert len(train) == 4 and len(val) == 2
    assert all(img.shape == (180, 320, 3) and not m.any() for img, m in train + val)
    # pass i flies past the facade of seed 300 + i, the first ones for training, the rest held out
    assert np.array_equal(train[2][0], clip_frames(1, 301, 1.0, 1, 0.25, 2)[0][0])
    assert np.array_equal(val[0][0], clip_frames(1, 302, 1.0, 1, 0.25, 2)[0][0])
    assert np.abs(train[0][0].astype(int) - train[2][0]).mean() > 10
