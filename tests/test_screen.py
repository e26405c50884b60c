"""Layer-wise AE screening: taps, early-exit row mapping, detectors, the stage and its errors."""

import json

import numpy as np
import pytest
import torch
import yaml

from adaptive.model import EarlyExitClassifier
from pipeline.errors import ConfigError, WeightsError
from pipeline.screen.model import ScreenModel
from pipeline.screen.taps import ActivationTap
from pipeline.screen.train import collect, fit, train_ae
from tests.conftest import ROOT, run_cli

ROOT_W = ROOT / "data" / "weights"
LAYERS = ["base.backbone.blocks.0", "base.backbone.blocks.1", "base.backbone.blocks.2", "base.backbone.blocks.3"]


def ee_model(threshold=0.5):
    torch.manual_seed(0)
    m = EarlyExitClassifier(4, widths=(8, 12, 16, 20), exits=(0, 1, 2), threshold=threshold).eval()
    return m


def test_tap_maps_early_exit_rows_to_their_samples():
    """With exits on, later blocks see fewer samples; each kept row must equal that sample's
    full-depth activation (the samples that stay are not always a prefix)."""
    m = ee_model()
    x = torch.randn(32, 3, 32, 32)
    # threshold at the median first-exit confidence: half the samples leave at the first exit
    with torch.no_grad():
        full = {}
        h = x
        for i, b in enumerate(m.base.backbone.blocks):
            h = b(h)
            full[LAYERS[i]] = h
        conf0 = m.log_probs(m.forward_all(x))[0].exp().amax(1)
    tap = ActivationTap(m, LAYERS)
    m.cfg.threshold = float(conf0.median())
    m(x)
    (call,) = tap.take()
    assert call["exit"] is not None and 0 < (call["exit"] == 0).sum() < 32
    from pipeline.screen.taps import rows

    for name in LAYERS[1:]:
        act = call["acts"].get(name)
        if act is None:
            continue
        idx = rows(act.shape[0], call["exit"], 32)
        assert act.shape[0] < 32
        torch.testing.assert_close(act, full[name][idx], rtol=1e-4, atol=1e-5)


def test_unknown_layer_is_a_config_error_with_suggestions():
    with pytest.raises(ConfigError) as e:
        ActivationTap(ee_model(), ["base.backbone.block.2"], "the condition model")
    assert "base.backbone.block.2" in str(e.value) and "base.backbone.blocks.2" in str(e.value)


def _tiny_screen(tmp_path, m):
    rng = np.random.default_rng(0)
    clean = lambda n: torch.from_numpy(rng.normal(0, 0.3, (n, 3, 32, 32)).astype(np.float32))  # noqa: E731
    run = m  # through __call__, so the hooks fire
    m.cfg.threshold = 2.0  # full depth while collecting
    train = collect(m, LAYERS, run, [clean(64) for _ in range(4)], 8)
    val = collect(m, LAYERS, run, [clean(64) for _ in range(3)], 8)
    screen = fit(LAYERS, train, val, {"stage": "x", "sha": "0"}, variant="wae", epochs=5)
    return screen, clean


def test_screen_separates_a_gross_shift_and_survives_save_load(tmp_path):
    m = ee_model()
    screen, clean = _tiny_screen(tmp_path, m)
    screen.save(tmp_path / "s.pt")
    screen = ScreenModel.load(tmp_path / "s.pt")
    tap = ActivationTap(m, LAYERS)
    m(clean(128))
    s_clean = screen.scores(tap.take())
    m(clean(128) * 8 + 3)  # far outside the clean range
    s_bad = screen.scores(tap.take())
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(np.r_[np.zeros(128), np.ones(128)], np.r_[s_clean, s_bad]) > 0.95
    assert np.nanmean(s_clean >= 0.995) < 0.1  # percentiles are calibrated on clean data
    # with exits on, early leavers are scored on the layers they reached
    m.cfg.threshold = 0.3
    m(clean(64))
    call = tap.take()
    assert not np.isnan(screen.scores(call)).all()


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_flattened_forest_scores_equal_sklearns(max_features):
    from sklearn.ensemble import IsolationForest
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from pipeline.screen import detector as det

    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 6))
    pipe = make_pipeline(StandardScaler(), IsolationForest(n_estimators=50, max_features=max_features, random_state=0)).fit(X)
    Y = np.r_[rng.normal(size=(50, 6)), rng.normal(4, 1, size=(50, 6))]
    np.testing.assert_allclose(det.for_inference(pipe)(Y), -pipe.score_samples(Y), rtol=1e-12)


def test_numpy_mixture_scores_equal_sklearns():
    from pipeline.screen import detector as det

    rng = np.random.default_rng(3)
    pipe = det.fit_unsupervised(rng.normal(size=(400, 6)) * [1, 2, 3, 4, 5, 6] + 10)
    scorer = det.for_inference(pipe)
    assert isinstance(scorer, det.MixtureScorer)
    Y = np.r_[rng.normal(size=(50, 6)) + 10, rng.normal(20, 5, size=(50, 6))]
    np.testing.assert_allclose(det.score(scorer, Y), -pipe.score_samples(Y), rtol=1e-10)


def test_gaussian_mixture_shrinks_to_small_fits_and_refuses_one_sample():
    from pipeline.screen import detector as det

    rng = np.random.default_rng(2)
    few = det.fit_unsupervised(rng.normal(size=(3, 4)))
    assert few[-1].n_components == 1
    far, near = det.score(few, np.r_[np.full((1, 4), 9.0), np.zeros((1, 4))])
    assert far > near
    assert det.fit_unsupervised(rng.normal(size=(400, 4)))[-1].n_components == 4
    with pytest.raises(ValueError, match="validation inputs"):
        det.fit_unsupervised(rng.normal(size=(1, 4)))


def test_wae_latent_is_pulled_towards_the_prior():
    """The MMD penalty gives the latent codes the prior's moments, N(0, I); the plain AE's drift."""
    torch.manual_seed(0)
    x = torch.randn(512, 6, 4, 4) * 5 + 2
    ae = train_ae(x, "wae", latent=4, epochs=40, lam=10)
    with torch.no_grad():
        z = ae(ae.prepare(x))[1]
    assert z.mean(0).abs().max() < 0.15 and (z.std(0) - 1).abs().max() < 0.2, (z.mean(0), z.std(0))


def test_screen_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="do not exist"):
        ScreenModel.load(tmp_path / "missing.pt")
    torch.save({"task": "condition_classification"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a screen"):
        ScreenModel.load(tmp_path / "other.pt")


def tiny_screen(kind: str, stage: dict, base, folder: str, data, split: dict, out) -> ScreenModel:
    """A screen really trained for a tiny stage on its tiny data (found under base/data/folder),
    with its clean table replaced so every frame out-scores it: the flow tests check the policy
    plumbing; detector quality is tested above and benchmarked."""
    import pipeline.screen.targets as targets
    from pipeline.train.screen import train_target

    p = {"grid": 8, "variant": "ae", "latent": 8, "hidden": 16, "epochs": 1, "lam": 1.0, "seed": 0}
    (base / "data").mkdir(exist_ok=True)
    if not (base / "data" / folder).exists():
        (base / "data" / folder).symlink_to(data)
    old, targets.ROOT = targets.ROOT, base
    try:
        train_target(kind, {"config": stage, **split, "val": None, "out": str(out)}, p)
    finally:
        targets.ROOT = old
    screen = ScreenModel.load(out)
    screen.clean = {d: np.array([-1e9]) for d in screen.clean}
    screen.save(out)
    return screen


@pytest.mark.slow
def test_flow_with_screens_review_policy_and_wrong_weights(tiny, clip, tmp_path):
    """A screen trained for the tiny damage model flags (threshold tiny), routes frames to review,
    shows them in the report; a screen trained for other weights is refused."""
    cfg = yaml.safe_load(tiny["flow"].read_text())
    dmg = cfg["stages"][1]
    tiny_screen("damage_segmentation", dmg, tiny["base"], "synth", tiny["data"], {"train": 8}, tmp_path / "scr.pt")
    cfg["stages"].insert(2, {"type": "screen", "target": "damage_segmentation", "model": str(tmp_path / "scr.pt"),
                             "policy": "review", "threshold": 0.5})
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    r = run_cli("run", "damage-survey", "--source", str(clip), "--config", str(flow), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["screened"] and all(s["action"] == "review" for s in summary["screened"])
    assert len(list((out / "review").glob("*.jpg"))) == len(summary["screened"])
    ev = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert all(e["screen"]["damage_segmentation"]["score"] is not None for e in ev)
    assert "Screened frames" in (out / "report.html").read_text()
    # the same screen beside other damage weights is refused before anything runs
    ck = torch.load(dmg["model"], weights_only=True)
    k = next(k for k, v in ck["state_dict"].items() if v.is_floating_point())
    ck["state_dict"][k] = ck["state_dict"][k] + 0.01
    torch.save(ck, tmp_path / "damage_other.pt")
    cfg["stages"][1] = {**dmg, "model": str(tmp_path / "damage_other.pt")}
    flow.write_text(yaml.safe_dump(cfg))
    r = run_cli("run", "damage-survey", "--source", str(clip), "--config", str(flow), "--out", str(tmp_path / "o2"))
    assert r.returncode != 0 and "were trained on" in r.stderr and "dvc repro train_screen" in r.stderr, r.stderr[-1500:]
    assert not (tmp_path / "o2" / "events.jsonl").exists()


def test_shipped_screens_fit_the_shipped_weights():
    """The screens in git were trained for the stage weights in git (dvc.lock keeps them in step)."""
    from flows.site_safety import load_config
    from pipeline.runner import DEFAULT_CONFIGS, Pipeline, load_flow_config

    cfg, base = load_flow_config(DEFAULT_CONFIGS / "damage-survey.yaml")
    pipe = Pipeline.from_config(cfg, base)
    screens = [s for s in pipe.stages if s.type_name == "screen"]
    assert {s.cfg.target for s in screens} == {"damage_segmentation", "component_condition"}
    assert all(s.tap is not None for s in screens)
    site = Pipeline.from_config(*load_config(DEFAULT_CONFIGS / "site-safety.yaml"))
    assert [s.cfg.target for s in site.stages if s.type_name == "screen"] == ["safety_detector"]


def test_site_screen_reads_the_running_yolo_and_scores_gated_frames_before_the_gate():
    """ultralytics predicts with a deep copy of the model: the screen's taps must report from it,
    before and after the predictor exists. Frames the 'nothing here' gate stops after layer 4 are
    scored on the screened layers up to the gate; the others on all four."""
    from pipeline.core import Frame, FrameResult
    from pipeline.synth.site import random_scene, render
    from stages import load_stage

    det = load_stage(ROOT / "stages" / "configs" / "safety_detector.yaml")
    screen = load_stage(ROOT / "stages" / "configs" / "screen_safety.yaml")
    screen.attach([det])
    rng = np.random.default_rng(4)
    imgs = [render(random_scene(rng, (416, 416))) for _ in range(3)]
    gate = det.backend.gate

    def run():
        batch = [FrameResult(frame=Frame(index=i, image=im, time_s=0.0, source="t")) for i, im in enumerate(imgs)]
        det.process(batch)
        screen.process(batch)
        return [r.screen["safety_detector"] for r in batch]

    gate.threshold = 0.0
    first = run()
    assert det.backend.model.predictor is not None and det.model is not det.backend.model.model  # the copy runs now
    again = run()
    assert [a["score"] for a in first] == [a["score"] for a in again] and all(a["inputs"] == 1 for a in first)
    full = ScreenModel.load(screen.cfg.model)
    calls = collect(det.model, full.layers, lambda b: det.backend(b, track=False), [imgs], 8)
    X, depth = full.layer_features(calls)
    assert depth.tolist() == [4, 4, 4]
    gate.threshold = 2.0  # everything stops at the gate: layers 6 and 10 never run
    stopped = run()
    assert all(a["score"] is not None for a in stopped) and gate.n_gated >= 3
    calls = collect(det.model, full.layers, lambda b: det.backend(b, track=False), [imgs], 8)
    assert full.layer_features(calls)[1].tolist() == [2, 2, 2]


@pytest.mark.slow
def test_site_flow_with_a_screen_reviews_flagged_frames(tiny_safety, tmp_path):
    """A screen trained for the tiny site detector, in the site-safety flow: flagged frames go to
    review/, get thumbnails and a report section; events carry every frame's score."""
    cfg = yaml.safe_load(tiny_safety["flow"].read_text())
    screen = tiny_screen("safety_detector", cfg["stages"][0], tiny_safety["base"], "sites", tiny_safety["base"] / "sites",
                         {"train": None}, tmp_path / "scr.pt")
    assert screen.target["stage"] == "safety_detector" and screen.layers[-1] == "model.10"
    cfg["stages"].insert(1, {"type": "screen", "target": "safety_detector", "model": str(tmp_path / "scr.pt"),
                             "policy": "review", "threshold": 0.5})
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    r = run_cli("run", "site-safety", "--source", tiny_safety["clip"], "--config", flow, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    ev = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(summary["screened"]) == summary["frames_processed"] == len(ev)
    assert all(e["screen"]["safety_detector"]["flagged"] for e in ev)
    assert len(list((out / "review").glob("*.jpg"))) == len(ev)
    assert all((out / s["thumbnail"]).exists() for s in summary["screened"])
    assert "Screened frames" in (out / "report.html").read_text()
    # beside other site weights it is refused, naming the DVC stage that retrains it
    cfg["stages"][0] = {**cfg["stages"][0], "model": str(ROOT_W / "safety.pt")}
    flow.write_text(yaml.safe_dump(cfg))
    r = run_cli("run", "site-safety", "--source", tiny_safety["clip"], "--config", flow, "--out", tmp_path / "o2")
    assert r.returncode != 0 and "dvc repro train_screen_safety" in r.stderr, r.stderr[-1500:]


def test_tta_averages_the_passes_and_a_screen_sees_only_the_plain_pass():
    """The close-up config averages flipped passes; a screen tapping the model must record one
    input per tile, not the flips too (it would score flipped activations against the owners)."""
    from pipeline.config import load_yaml
    from stages import load_stage
    from stages.segmentation import pad_to_multiple
    from pipeline.models.preprocess import to_tensor

    spec = {**load_yaml(ROOT / "stages" / "configs" / "damage_closeup.yaml"), "model": str(ROOT_W / "damage_closeup.pt")}
    assert spec["tta"] == ["hflip", "vflip", "rot180", "transpose"]
    stage = load_stage(spec)
    img = np.random.default_rng(0).integers(0, 255, (100, 130, 3), np.uint8)  # not a multiple of 32: padded
    tap = ActivationTap(stage.model, ["encoder.model.blocks.2"])
    got = stage._logits([img])
    calls = tap.take()
    assert len(calls) == 1 and calls[0]["n"] == 1

    with torch.inference_mode():
        x, h, w = pad_to_multiple(to_tensor([img]))
        m = stage.model
        want = (m(x) + m(x.flip(-1)).flip(-1) + m(x.flip(-2)).flip(-2) + m(x.flip(-1, -2)).flip(-1, -2)
                + m(x.transpose(-1, -2)).transpose(-1, -2))[..., :h, :w] / 5
        want = want + torch.tensor([0.0, spec["class_bias"]["crack"], 0.0, 0.0])[:, None, None]  # the config's crack offset
    assert torch.allclose(got, want, atol=1e-4)
    tap.take()
    plain = load_stage({**spec, "tta": []})
    assert not torch.allclose(plain._logits([img]), got, atol=1e-3)  # the extra passes change the answer


def test_tta_names_are_validated(tmp_path):
    from stages import load_stage

    with pytest.raises(ConfigError, match="tta"):
        load_stage({"type": "damage_segmentation", "model": str(ROOT_W / "damage.pt"), "tta": ["rotate"]})


def test_onnxruntime_gives_the_torch_masks_and_feeds_the_screens_taps(tmp_path, monkeypatch):
    """`runtime: onnxruntime` exports the model with every hooked block as an extra output, so a
    screen reading those blocks sees what torch computes; flipped test-time passes stay unrecorded."""
    import pipeline.models.onnx as ox
    from stages import load_stage

    monkeypatch.setattr(ox, "CACHE", tmp_path / "onnx")
    spec = {"type": "damage_segmentation", "model": str(ROOT_W / "damage.pt"), "input_scale": 1.0, "tta": ["hflip"]}
    ref, ort = load_stage(spec), load_stage({**spec, "runtime": "onnxruntime"})
    rng = np.random.default_rng(1)
    imgs = [rng.integers(0, 255, (100, 130, 3), np.uint8), rng.integers(0, 255, (100, 130, 3), np.uint8)]
    layers = ["encoder.model.blocks.1", "encoder.model.blocks.4"]
    taps = [ActivationTap(s.model, layers) for s in (ref, ort)]
    ort.prepare()  # what Pipeline.from_config does once the chain is bound: export before the first batch
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    masks = [s.predict(imgs) for s in (ref, ort)]
    for a, b in zip(*masks):
        assert (a != b).mean() < 1e-3
    (ca,), (cb,) = taps[0].take(), taps[1].take()
    assert ca["n"] == cb["n"] == 2
    for name in layers:
        assert torch.allclose(ca["acts"][name], cb["acts"][name], atol=1e-3)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1  # one export, for this set of tapped blocks
    taps[1].remove()
    ort.predict(imgs)  # no hooks left: a second export without extra outputs
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2


def test_onnxruntime_refuses_what_it_cannot_run():
    from stages import load_stage

    base = {"type": "damage_segmentation", "model": str(ROOT_W / "damage.pt"), "runtime": "onnxruntime"}
    with pytest.raises(ConfigError, match="gate"):
        load_stage({**base, "gate": str(ROOT_W / "damage_gate.pt")})
    with pytest.raises(ConfigError, match="runtime"):
        load_stage({**base, "runtime": "tensorrt"})
    stage = load_stage(base)
    x = torch.zeros(1, 3, 64, 64, requires_grad=True)
    with pytest.raises(ConfigError, match="gradients"):
        stage.model(x)


def test_attack_harness_gets_a_torch_model_with_gradients():
    """The shipped damage config runs under ONNX Runtime; attacks backpropagate, so the harness loads torch."""
    from pipeline.screen.targets import Target

    t = Target("damage_segmentation")
    assert t.stage.cfg.runtime == "torch"
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    t.classifier()(x)[:, 1].sum().backward()  # the damage logit (the two logits sum to 0)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_train_screen_checks_each_targets_detector_before_training():
    from pipeline.train import screen as train_screen

    p = {"detector": "gmm", "seed": 0, "targets": {"damage_segmentation": {"detector": "svm", "train": 1, "out": "unused.pt"}}}
    with pytest.raises(SystemExit, match=r"train_screen\.targets\.damage_segmentation\.detector: 'svm'"):
        train_screen.main(p)


def test_exit_confidences_join_each_layer_with_exits_on_or_off(tmp_path):
    """A screen that reads the exits: exit i's confidences sit beside layer i, NaN past a sample's
    own exit, equal to the full-depth ones where reached; the flag survives save/load."""
    from pipeline.screen.exits import WIDTH

    m = ee_model()
    rng = np.random.default_rng(0)
    clean = lambda n: torch.from_numpy(rng.normal(0, 0.3, (n, 3, 32, 32)).astype(np.float32))  # noqa: E731
    m.cfg.threshold = 2.0
    train = collect(m, LAYERS, m, [clean(64) for _ in range(3)], 8)
    val = collect(m, LAYERS, m, [clean(64) for _ in range(3)], 8)
    fit(LAYERS, train, val, {"stage": "x", "sha": "0"}, epochs=2, exits=True).save(tmp_path / "s.pt")
    screen = ScreenModel.load(tmp_path / "s.pt")
    assert screen.exits and screen._width(4) == 4 * (2 + WIDTH)

    x = clean(48)
    with torch.no_grad():
        full = m.log_probs(m.forward_all(x))
    tap = ActivationTap(m, LAYERS)
    m.cfg.threshold = float(full[0].exp().amax(1).median())
    m(x)
    (call,) = tap.take()
    X, depth = screen.layer_features([call])
    ex = call["exit"].numpy()
    assert 0 < (ex == 0).sum() < 48 and (depth == ex + 1).all()
    w = 2 + WIDTH
    for i in range(4):
        got = X[:, i * w + 2 : (i + 1) * w]
        reached = ex >= i
        assert np.isnan(got[~reached]).all() and not np.isnan(got[reached]).any()
        lp = full[i].double()
        np.testing.assert_allclose(got[reached, 1], -(lp.exp() * lp).sum(1).numpy()[reached], atol=1e-4)
        own = ex == i  # where a sample leaves, it decides this exit's top class: the margin is top - second
        top2 = lp.topk(2, 1).values.numpy()
        np.testing.assert_allclose(got[own, 0], np.minimum(top2[own, 0] - top2[own, 1], 30), atol=1e-3)
        assert (got[reached, 0][ex[reached] > i] <= 30).all()
    assert not np.isnan(screen.scores([call])).any()


def test_exit_screen_needs_layers_on_the_exits_blocks():
    from pipeline.screen.exits import check_layers

    check_layers(ee_model(), LAYERS, "the condition model")
    with pytest.raises(ConfigError, match="exits' blocks"):
        check_layers(ee_model(), LAYERS[1:], "the condition model")
    with pytest.raises(ConfigError, match="no early exits"):
        check_layers(torch.nn.Conv2d(3, 3, 1), LAYERS, "a plain model")


def test_onnxruntime_gives_a_size_that_keeps_coming_back_a_fixed_size_graph(tmp_path, monkeypatch):
    """Video frames are one size: from its third call that size runs a graph exported at it, one image per run,
    with the free-size graph's results; once `fixed_sizes` sizes have one, other sizes keep the free-size graph."""
    import pipeline.models.onnx as ox

    monkeypatch.setattr(ox, "CACHE", tmp_path / "onnx")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                              torch.nn.Upsample(scale_factor=2.0), torch.nn.Conv2d(8, 4, 1)).eval()
    fwd = ox.OnnxForward(net, "tiny-net", fixed_sizes=1)
    x = torch.rand(3, 3, 32, 48)
    with torch.no_grad():
        ref = torch.nn.Sequential.forward(net, x)
    for call in range(1, 5):
        assert torch.allclose(fwd(x), ref, atol=1e-5), call
        assert [s for _, s in fwd._sessions] == ([None] if call < ox.FIXED_AFTER else [None, (32, 48)]), call
    other = torch.rand(2, 3, 64, 64)
    for _ in range(ox.FIXED_AFTER + 1):  # a second size, past the one fixed size allowed: the free-size graph
        fwd(other)
    assert sorted(map(str, (s for _, s in fwd._sessions))) == ["(32, 48)", "None"]
