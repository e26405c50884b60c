"""`precision: int8`: a segmenter's fixed-size ONNX graphs run quantized, calibrated on synthetic frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError

ROOT_W = Path(__file__).resolve().parent.parent / "data" / "weights"


def test_calibration_frames_are_the_same_on_every_machine():
    from pipeline.models.int8 import facade_frames

    a, b = facade_frames(96, 160, n=2), facade_frames(96, 160, n=2)
    assert [f.shape for f in a] == [(96, 160, 3)] * 2 and a[0].dtype == np.uint8
    assert all((x == y).all() for x, y in zip(a, b))
    assert not (a[0] == a[1]).all()  # two facades, not one frame twice
    assert not (facade_frames(96, 160, n=1, seed=1)[0] == a[0]).all()


def test_int8_needs_onnxruntime():
    from stages import load_stage

    spec = {"type": "component_segmentation", "model": str(ROOT_W / "components.pt"), "precision": "int8"}
    with pytest.raises(ConfigError, match="precision: int8"):
        load_stage({**spec, "runtime": "torch"})
    with pytest.raises(ConfigError, match="precision"):
        load_stage({**spec, "runtime": "onnxruntime", "precision": "int4"})


def test_int8_segmenter_quantizes_its_fixed_size_graph_and_keeps_the_float_masks(tmp_path, monkeypatch):
    """The shipped component segmenter at int8: a size that keeps coming back gets a quantized graph (the first
    calls, on the free-size graph, stay float and equal the float stage's masks), and its masks on frames the
    calibration never saw match the float model's almost everywhere."""
    import onnx

    import pipeline.models.onnx as ox
    from pipeline.models.int8 import facade_frames
    from stages import load_stage

    monkeypatch.setattr(ox, "CACHE", tmp_path / "onnx")
    spec = {"type": "component_segmentation", "model": str(ROOT_W / "components.pt"), "runtime": "onnxruntime",
            "input_scale": 1.0}
    fp32, int8 = load_stage(spec), load_stage({**spec, "precision": "int8"})
    frames = facade_frames(192, 320, n=6, seed=7)
    for call in range(ox.FIXED_AFTER - 1):  # the free-size graph: float in both
        assert (fp32.predict(frames[:1])[0] == int8.predict(frames[:1])[0]).all(), call
    assert not list((tmp_path / "onnx").glob("*int8*.onnx"))
    want, got = fp32.predict(frames), int8.predict(frames)
    (q,) = (tmp_path / "onnx").glob("*int8*.onnx")
    ops = {n.op_type for n in onnx.load(str(q)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    assert [s for _, s in int8.model.forward._sessions] == [None, (192, 320)]
    same = np.mean([(a == b).mean() for a, b in zip(want, got)])
    assert 0.95 < same < 1.0, same  # 0.968 here; close, and not the float graph under another name
    stamp = q.stat().st_mtime_ns
    again = load_stage({**spec, "precision": "int8"})
    for _ in range(ox.FIXED_AFTER):
        again.predict(frames[:1])
    assert q.stat().st_mtime_ns == stamp  # the cached quantized graph, not a second calibration
    assert (again.predict(frames)[0] == got[0]).all()


def test_weights_use_reduced_range_exactly_where_the_cpu_lacks_vnni(monkeypatch, tmp_path):
    """Without VNNI, ONNX Runtime's 8-bit kernels can saturate: 7-bit weights there, in a cache file of their own."""
    import pipeline.models.int8 as int8
    from pipeline.models.onnx import _int8_path

    for vnni in (True, False):
        monkeypatch.setattr(int8, "has_vnni", lambda v=vnni: v)
        assert int8.reduce_range() is (not vnni)
        assert _int8_path(tmp_path / "g.onnx").name == ("g-int8v1.onnx" if vnni else "g-int8v1r.onnx")
    monkeypatch.setattr(int8, "REDUCE_RANGE", True)
    monkeypatch.setattr(int8, "has_vnni", lambda: True)
    assert int8.reduce_range() is True


def test_a_screen_beside_an_8bit_target_scores_its_8bit_calls_against_an_8bit_table(tmp_path, monkeypatch):
    """The damage screen was trained on the float segmenter's activations. Beside the 8-bit segmenter it needs the
    table `dvc repro calibrate_screen` takes from that graph; each call is scored against its own precision's
    table (a size's first calls run the float graph)."""
    import pipeline.models.onnx as ox
    from pipeline.core import Frame, FrameResult
    from pipeline.errors import WeightsError
    from pipeline.screen import calibration
    from stages import load_stage

    monkeypatch.setattr(ox, "CACHE", tmp_path / "onnx")
    configs = ROOT_W.parent.parent / "stages" / "configs"
    dmg = load_stage({"type": "damage_segmentation", "model": str(ROOT_W / "damage.pt"), "runtime": "onnxruntime",
                      "precision": "int8"})
    bare = {"type": "screen", "target": "damage_segmentation", "model": str(ROOT_W / "screen_damage.pt")}
    with pytest.raises(ConfigError, match="int8_calibration"):
        load_stage(bare).attach([dmg])
    shipped = load_stage(configs / "screen_damage.yaml").cfg.int8_calibration
    other = tmp_path / "other.int8.pt"  # a table taken for other target weights
    _, table = calibration.load(shipped, ROOT_W / "screen_damage.pt", load_stage(bare).screen.target)
    calibration.save(other, "int8", table, ROOT_W / "screen_damage.pt", {"weights": "x.pt", "sha": "0" * 16})
    with pytest.raises(WeightsError, match="calibrate_screen"):
        load_stage({**bare, "int8_calibration": str(other)}).attach([dmg])

    screen = load_stage({**bare, "int8_calibration": str(shipped)})
    screen.attach([dmg])
    dmg.prepare()
    assert set(screen.screen.calibrations) == {"int8"}
    from pipeline.models.int8 import facade_frames

    frames = facade_frames(192, 256, n=4, seed=7)  # not the calibration frames (seed 0)
    got, want = [], []
    for k in range(4):  # the same size four times: float, float, then the 8-bit graph
        batch = [FrameResult(Frame(i, im, 0.0, "test")) for i, im in enumerate(frames)]
        dmg.process(batch)
        calls = list(screen.tap.calls)
        screen.process(batch)
        got.append(calls[-1]["precision"])
        X, depth = screen.screen.layer_features(calls[-1:])
        raw = screen.screen.raw_scores(X, depth)
        clean = table if got[-1] == "int8" else None
        want.append(screen.screen.percentile(raw, depth, clean))
        assert [r.screen["damage_segmentation"]["score"] for r in batch] == pytest.approx(np.round(want[-1], 4), abs=1e-4)
    assert got == ["fp32"] * (ox.FIXED_AFTER - 1) + ["int8"] * (5 - ox.FIXED_AFTER)
    assert not all(np.array_equal(table[d], screen.screen.clean[d]) for d in table)  # two tables, not one twice
    assert np.isfinite(want[-1]).all() and (want[-1] < 1).any()  # clean facades, ranked among the clean inputs
