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
