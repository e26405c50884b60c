"""The trainers' channels-last layout and `precision` option: what they save loads and predicts like any
checkpoint, and a bad or emulated precision is refused before training starts."""

import pytest
import torch

from pipeline.models import checkpoint
from pipeline.train import condition, segmentation
from pipeline.train.common import autocast, channels_last, check_precision

bf16_native = pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                                 reason="this CPU has no native bf16 (AVX512-BF16 or AMX)")


def test_a_channels_last_model_saves_a_plain_checkpoint_that_predicts_the_same(tiny, tmp_path):
    model, _ = checkpoint.load(tiny["weights"] / "damage_synth.pt", "damage_segmentation")
    model.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.inference_mode():
        want = model(x)
    nhwc = channels_last(model)
    convs = [m.weight for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    path = tmp_path / "nhwc.pt"
    checkpoint.save(path, nhwc, checkpoint.read(tiny["weights"] / "damage_synth.pt")["model"],
                    "damage_segmentation", ["background", "crack", "spall", "rebar"])
    assert all(v.is_contiguous() for v in checkpoint.read(path)["state_dict"].values())
    again, _ = checkpoint.load(path, "damage_segmentation")
    again.eval()
    with torch.inference_mode():
        got = again(channels_last(x))
    # both sides went through fp16 storage; only the convolutions' summation order differs
    assert torch.allclose(got, want, atol=1e-3)


def test_an_unknown_precision_is_refused_with_the_choices(tiny, tmp_path):
    with pytest.raises(ValueError, match=r"precision: 'fp16' is not one of \['fp32', 'bf16'\]"):
        segmentation.train(tiny["params"]["train_damage"] | {"precision": "fp16", "out": str(tmp_path / "x.pt")})
    assert not (tmp_path / "x.pt").exists()


def test_bf16_on_a_cpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    with pytest.raises(ValueError, match="emulated on this cpu.*set precision: fp32"):
        check_precision("bf16", torch.device("cpu"))


@bf16_native
def test_bf16_training_writes_fp16_weights_that_run_in_fp32(tiny, tmp_path):
    p = tiny["params"]["train_damage"] | {"precision": "bf16", "out": str(tmp_path / "damage.pt")}
    segmentation.train(p)
    saved = checkpoint.read(p["out"])
    assert saved["meta"]["precision"] == "bf16"
    model, _ = checkpoint.load(p["out"], "damage_segmentation")
    with torch.inference_mode():
        assert torch.isfinite(model.eval()(torch.rand(1, 3, 64, 64))).all()
    c = tiny["params"]["train_condition"] | {"precision": "bf16", "out": str(tmp_path / "condition.pt")}
    condition.train(c)
    assert checkpoint.read(c["out"])["meta"]["precision"] == "bf16"


def test_the_precision_helpers_take_a_device_or_its_name():
    assert check_precision("fp32", "cpu") == "fp32"
    with autocast("fp32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
