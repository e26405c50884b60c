"""Early exits: per-sample exits in a shrinking batch agree with the full computation; FLOPs,
calibration and the three training regimes run for real on a small learnable problem."""

import numpy as np
import pytest
import torch

from adaptive.backbone import Classifier
from adaptive.model import EarlyExitModel, ExitConfig, calibrate, evaluate_exits, simulate
from adaptive.train import train
from pipeline.errors import ConfigError

from .conftest import cuda


def toy(n=192, seed=0):
    """4 classes told apart by the colour of a random blob (red, green, blue, white): learnt in seconds."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 3, 32, 32, generator=g) * 0.4
    for i, c in enumerate(y.tolist()):
        r, q = torch.randint(0, 20, (2,), generator=g).tolist()
        ch = [c] if c < 3 else [0, 1, 2]
        x[i, ch, r : r + 12, q : q + 12] += 0.6
    return x, y


def model(method, **kw):
    torch.manual_seed(0)
    return EarlyExitModel(Classifier(4, widths=(8, 16, 24, 32)), 4, ExitConfig(method=method, exits=[0, 1, 2], **kw))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
@pytest.mark.parametrize("method,conv", [("sdn", 0), ("pbee", 0), ("ztw", 0), ("ztw", 8)])
def test_batched_inference_matches_per_sample_simulation(method, conv, device):
    m = model(method, patience=2, conv=conv).eval().to(device)
    x = toy(64)[0].to(device)
    with torch.no_grad():
        lps = [lp.cpu() for lp in m.log_probs(m.forward_all(x))]
    # a threshold that half the batch clears at the first IC, so the batch must split
    m.cfg.threshold = thr = float(lps[0].exp().amax(1).median())
    out, where = m.infer(x)
    out, where = out.cpu(), where.cpu()
    expect = simulate(lps, method, threshold=thr, patience=2)
    assert (where.numpy() == expect).all()
    picked = torch.stack([lps[e][i] for i, e in enumerate(expect)])
    assert torch.allclose(out, picked, atol=1e-5)
    if method != "pbee":  # an untrained model's ICs rarely agree, so PBEE is checked below
        assert len(set(expect.tolist())) > 1  # the batch really split across exits


def test_pbee_patience_one_exits_at_the_first_ic():
    m = model("pbee", patience=1).eval()
    _, where = m.infer(toy(16)[0])
    assert (where == 0).all()


@pytest.mark.parametrize("regime", ["joint", "disjoint", "mixed"])
def test_regimes_train_every_exit(regime):
    x, y = toy(256)
    xv, yv = toy(128, seed=1)
    m = model("ztw")
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    before = [p.clone() for p in m.base.parameters()]
    train(m, batches, regime, epochs=4, lr=1e-2)
    m.eval()
    with torch.no_grad():
        lps = m.log_probs(m.forward_all(xv))
    accs = [float((lp.argmax(1) == yv).float().mean()) for lp in lps]
    assert accs[-2] > 0.8, accs  # the deepest IC, trained in every regime, is far above chance (0.25)
    moved = any(not torch.equal(a, b) for a, b in zip(before, m.base.parameters()))
    assert moved  # every regime trains the backbone in some phase


def test_flops_grow_per_exit_and_calibration_meets_budget():
    m = model("sdn").eval()
    flops = m.flops_per_exit((3, 32, 32))
    assert (np.diff(flops) > 0).all()
    x, y = toy(128)
    with torch.no_grad():
        lps = m.log_probs(m.forward_all(x))
    pick = calibrate(lps, y, flops, "sdn", target_flops=0.6)
    acc, share = evaluate_exits(lps, y, flops, simulate(lps, "sdn", threshold=pick["threshold"]))
    assert share <= 0.6 or pick["flops_share"] == share
    # a conv in each IC is counted: every exit costs more than the pooled-only IC at the same block
    assert (model("sdn", conv=8).flops_per_exit((3, 32, 32))[:-1] > flops[:-1]).all()


def test_bad_exit_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="cannot hold an IC"):
        EarlyExitModel(Classifier(4, widths=(8, 16)), 4, ExitConfig(exits=[5]))
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ExitConfig(exits=[0], threshold=1.5)
    from pipeline.train.condition_ee import train as train_ee

    # refused before any weights or crops load
    with pytest.raises(ConfigError, match="ensemble_fit.*'sdn'"):
        train_ee({"method": "sdn", "ensemble_fit": "val"})
    with pytest.raises(ConfigError, match="ztw_loss: 'both'"):
        train_ee({"method": "ztw", "ztw_loss": "both"})


def test_condition_stage_swaps_in_the_early_exit_model_through_yaml(tiny):
    """train_condition_ee on the tiny data; the condition stage loads it by path alone, and the
    exit knob is checked against the model it is given."""
    from pipeline.train.condition_ee import train as train_ee
    from stages import load_stage

    p = dict(tiny["params"]["train_condition_ee"])
    pick = train_ee(p)
    assert 0 < pick["flops_share"] <= 1
    stage = load_stage({"type": "component_condition", "model": p["out"], "exit_threshold": 0.7})
    assert stage.model.cfg.threshold == 0.7
    x = torch.randn(5, 3, 64, 64)
    probs = torch.softmax(stage.model(x), 1)
    assert torch.allclose(probs.sum(1), torch.ones(5), atol=1e-4)
    with pytest.raises(ConfigError, match="not an early-exit model"):
        load_stage({"type": "component_condition", "model": str(tiny["weights"] / "condition.pt"), "exit_threshold": 0.7})


def test_folding_batchnorm_keeps_outputs_and_skips_norms_with_activations():
    from torch import nn

    from pipeline.models.fold import fold_batchnorm

    m = model("ztw")
    x, y = toy(64)
    train(m, [(x[i : i + 32], y[i : i + 32]) for i in range(0, 64, 32)], "joint", epochs=1, lr=1e-2)  # non-trivial running stats
    m.eval().cfg.threshold = 1.0
    with torch.no_grad():
        ref = m(x)
        fold_batchnorm(m)
        assert not any(type(k) is nn.BatchNorm2d for k in m.modules())
        assert torch.allclose(m(x), ref, atol=1e-4)

    class NormAct(nn.BatchNorm2d):  # like timm's BatchNormAct2d: folding it would drop its activation
        def forward(self, t):
            return torch.relu(super().forward(t))

    seq = nn.Sequential(nn.Conv2d(3, 4, 3), NormAct(4)).eval()
    fold_batchnorm(seq)
    assert isinstance(seq[1], NormAct)
    with pytest.raises(ValueError, match="eval"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


def test_ztw_separate_loss_trains_heads_alone_and_ensembles_on_detached_outputs():
    from adaptive.model import ic_loss

    m = model("ztw")
    x, y = toy(32)
    for kind in ("ensemble", "separate"):
        m.zero_grad()
        logits = m.forward_all(x)
        ic_loss(m, logits, y, kind).backward()
        assert m.ensemble.raw_w.grad is not None and m.ensemble.raw_w.grad.abs().sum() > 0
        assert all(p.grad is not None for p in m.ics[0].parameters())
    # separate: the first IC's gradient is that of its own cross-entropy over the count of exits, nothing more
    m.zero_grad()
    z0 = m.forward_all(x)[0]
    (torch.nn.functional.cross_entropy(z0, y) / m.n_exits).backward()
    own = [p.grad.clone() for p in m.ics[0].parameters()]
    m.zero_grad()
    ic_loss(m, m.forward_all(x), y, "separate").backward()
    for g, p in zip(own, m.ics[0].parameters()):
        torch.testing.assert_close(p.grad, g)


def test_fit_ensemble_learns_on_held_out_data_to_distrust_a_head_that_does_not_generalise():
    from adaptive.train import fit_ensemble

    x, y = toy(256)
    m = model("ztw")
    train(m, [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)], "disjoint", epochs=4, lr=1e-2)
    with torch.no_grad():  # a final head that learnt the wrong thing: it names the next class
        m.base.head[-1].weight.copy_(m.base.head[-1].weight.roll(1, 0))
        m.base.head[-1].bias.copy_(m.base.head[-1].bias.roll(1, 0))
    frozen = {n: p.clone() for n, p in m.named_parameters() if not n.startswith("ensemble.")}
    xt, yt = toy(256, seed=2)

    def final_acc():
        m.eval()
        with torch.no_grad():
            return float((m.log_probs(m.forward_all(xt))[-1].argmax(1) == yt).float().mean())

    before = final_acc()
    fit_ensemble(m, *toy(256, seed=1), batch=100)
    after = final_acc()
    assert before < 0.5 and after > 0.8, (before, after)  # it leans on the ICs instead, on data it never saw
    assert all(torch.equal(p, frozen[n]) for n, p in m.named_parameters() if n in frozen)  # only the ensembles moved
    with pytest.raises(ValueError, match="ZTW"):
        fit_ensemble(model("sdn"), x, y)
