"""Placing a flow's models on a device. The CUDA half compares every shipped stage on the GPU with the
same stage on the CPU, on the same frames; it runs only where a GPU is (CI has none: a machine with one
runs `pytest tests/test_device.py`)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
import yaml

from pipeline.errors import ConfigError
from pipeline.runner import DEFAULT_CONFIGS, Pipeline, load_flow_config
from stages import parse_stage
from stages.base import on_device

from .conftest import ROOT, cuda, run_cli

DAMAGE_STAGE = ROOT / "stages" / "configs" / "damage_segmentation.yaml"


def test_flow_device_moves_every_stage_and_onnx_stages_to_torch():
    _, cfg = parse_stage(DAMAGE_STAGE)
    assert (cfg.device, cfg.runtime) == ("cpu", "onnxruntime")
    moved = on_device(cfg, "cuda:0")
    assert (moved.device, moved.runtime) == ("cuda:0", "torch")  # ONNX Runtime here runs on the CPU only
    assert on_device(cfg, "cpu").runtime == "onnxruntime"
    assert on_device(cfg, None) is cfg
    _, comp = parse_stage(ROOT / "stages" / "configs" / "component_segmentation.yaml")
    assert (comp.runtime, comp.precision) == ("onnxruntime", "int8")
    assert (on_device(comp, "cuda").runtime, on_device(comp, "cuda").precision) == ("torch", "fp32")


def test_a_device_name_or_index_that_does_not_exist_is_one_clear_error(tmp_path, clip):
    _, cfg = parse_stage(DAMAGE_STAGE)
    with pytest.raises(ConfigError, match="(?s)'gpu'.*cpu, cuda, cuda:N or mps"):
        on_device(cfg, "gpu")
    flow = yaml.safe_load((DEFAULT_CONFIGS / "damage-survey.yaml").read_text())
    flow["stages"] = [str((DEFAULT_CONFIGS / s).resolve()) for s in flow["stages"]]
    bad = tmp_path / "flow.yaml"
    bad.write_text(yaml.safe_dump({**flow, "device": "gpu"}))
    with pytest.raises(ConfigError, match="device"):
        load_flow_config(bad)
    # one past the last GPU (cuda:0 on a machine without one): named before any model loads
    missing = f"cuda:{torch.cuda.device_count()}"
    r = run_cli("run", "damage-survey", "--source", clip, "--out", tmp_path / "out", "--device", missing)
    assert r.returncode == 2, r.stderr[-2000:]
    assert missing in r.stderr and "fix:" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists()


class Box(NamedTuple):
    box: tuple
    class_id: int


def _frames(source, n: int) -> list:
    from pipeline.sources import SourceOptions, open_source

    return list(open_source(str(source), SourceOptions(max_frames=n)))


def _run_on(flow: str, device: str, frames: list, budget: str = "full") -> list:
    if flow == "damage-survey":
        cfg, base = load_flow_config(DEFAULT_CONFIGS / f"{flow}.yaml")
    else:
        from pipeline.safety.flow_config import load_config

        cfg, base = load_config(DEFAULT_CONFIGS / f"{flow}.yaml")
    pipe = Pipeline.from_config(cfg.model_copy(update={"budget": budget, "device": device}), base)
    out = []
    for i in range(0, len(frames), cfg.batch_size):
        out += pipe(frames[i : i + cfg.batch_size])
    return out


def _matched(a: list, b: list, iou: float = 0.9) -> list[tuple[int, int]]:
    """Pairs (i, j) of same-class items whose boxes overlap at `iou` or more, each i with its best j."""
    from torchvision.ops import box_iou

    if not a or not b:
        return []
    m = box_iou(torch.tensor([x.box for x in a], dtype=torch.float32), torch.tensor([y.box for y in b], dtype=torch.float32))
    m[torch.tensor([x.class_id for x in a])[:, None] != torch.tensor([y.class_id for y in b])[None]] = 0
    best, j = m.max(1)
    return [(i, int(j[i])) for i in range(len(a)) if best[i] >= iou]


@cuda
@pytest.mark.parametrize("budget", ["full", "balanced"])  # balanced: crops leave the classifier at early exits
def test_damage_survey_on_cuda_gives_the_cpu_results(clip, budget):
    frames = _frames(clip, 12)
    cpu, gpu = _run_on("damage-survey", "cpu", frames, budget), _run_on("damage-survey", "cuda", frames, budget)
    matched = same_state = total = 0
    for a, b in zip(cpu, gpu):
        assert (a.component_mask == b.component_mask).mean() >= 0.99
        assert (a.damage_mask == b.damage_mask).mean() >= 0.99
        da, db = a.damage_mask > 0, b.damage_mask > 0
        if da.sum() > 100:
            assert (da & db).sum() / (da | db).sum() >= 0.9
        pairs = _matched(a.components, b.components)
        total += len(a.components)
        matched += len(pairs)
        same_state += sum(a.components[i].state == b.components[j].state for i, j in pairs)
        for target, s in a.screen.items():
            t = b.screen[target]
            assert (s["score"] is None) == (t["score"] is None)
            if s["score"] is not None:
                assert abs(s["score"] - t["score"]) <= 0.05, (target, s, t)
    assert total and matched >= 0.9 * total and same_state >= 0.95 * matched, (total, matched, same_state)


@cuda
def test_damage_gate_on_cuda_stops_the_frames_it_stops_on_the_cpu(clip):
    from stages import load_stage

    w = ROOT / "data" / "weights"
    frames = [f.image for f in _frames(clip, 12)]
    out = {}
    for dev in ("cpu", "cuda"):
        st = load_stage({"type": "damage_segmentation", "model": str(w / "damage.pt"), "gate": str(w / "damage_gate.pt"),
                         "runtime": "torch", "device": dev, "input_scale": 0.5})
        masks, exits = [], []
        for i in range(0, len(frames), 4):
            masks += st.predict(frames[i : i + 4])
            exits += st.model.last_exit.cpu().tolist()
        out[dev] = masks, exits
    assert out["cpu"][1] == out["cuda"][1]
    for a, b in zip(out["cpu"][0], out["cuda"][0]):
        assert (a == b).mean() >= 0.99


@cuda
def test_site_safety_on_cuda_gives_the_cpu_results(tmp_path):
    from pipeline.synth.site_data import site_video

    clip = tmp_path / "site.mp4"
    site_video(clip, seconds=2, seed=5, fps=5, size=(1280, 720), progress=False)
    frames = _frames(clip, 10)
    cpu, gpu = _run_on("site-safety", "cpu", frames), _run_on("site-safety", "cuda", frames)
    boxes = matched = same_status = 0
    for a, b in zip(cpu, gpu):
        da, db = ([Box(tuple(x), int(c)) for x, c, p in zip(d.xyxy, d.class_id, d.confidence) if p >= 0.3]
                  for d in (a.detections, b.detections))
        boxes += len(da)
        matched += len(_matched(da, db))
        same_status += sorted(d.status for d in a.decisions) == sorted(d.status for d in b.decisions)
        for target, s in a.screen.items():
            if s["score"] is not None:
                assert abs(s["score"] - b.screen[target]["score"]) <= 0.05, (target, s, b.screen[target])
    assert boxes and matched >= 0.9 * boxes, (boxes, matched)
    assert same_status >= 0.9 * len(frames), (same_status, len(frames))
