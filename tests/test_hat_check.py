"""The hat check: a second look at each hat box the rule accepted."""

import cv2
import numpy as np
import pytest
import yaml

from pipeline.core import Frame, FrameResult
from pipeline.errors import ConfigError, WeightsError
from pipeline.runner import Pipeline
from pipeline.safety.hat_check import HatCheck, save, worn_features
from pipeline.safety.rule import RuleConfig, decide
from stages import load_stage
from tests.conftest import ROOT
from tests.test_rule import dets, person, worn_hat

CONFIGS = ROOT / "stages" / "configs"


def _scene(hat_bgr):
    im = np.full((300, 400, 3), (200, 190, 180), np.uint8)
    cv2.rectangle(im, (176, 76), (224, 106), hat_bgr, -1)  # what sits where the worker's hat box is
    return im


def _toy_check(path):
    """A check fitted on worn calls whose hat box is bright (hard hats) against dark, uneven ones (hair), at the
    detector's faint scores."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X, y = [], []
    for i in range(200):
        hat = i % 2 == 0
        base = rng.choice([(30, 205, 245), (235, 235, 235), (20, 120, 245)]) if hat else rng.integers(10, 60, 3)
        im = _scene((200, 190, 180)).astype(float)
        im[76:107, 176:225] = base + rng.normal(0, 4 if hat else 20, (31, 49, 3))
        (d,) = decide(dets(person(200, head_y=100), worn_hat(200, head_y=100, conf=rng.uniform(0.1, 0.5))),
                      RuleConfig(head_source="pose", hat_conf=0.1))
        X.append(worn_features(np.clip(im, 0, 255).astype(np.uint8), d))
        y.append(hat)
    save(path, HistGradientBoostingClassifier(max_iter=30).fit(np.array(X), np.array(y)),
         {"weights": "toy.pt", "sha": "0", "imgsz": 512}, {"examples": 200})


def test_a_worn_call_on_a_dark_box_becomes_no_hat_and_a_bright_hat_stays_worn(tmp_path):
    _toy_check(tmp_path / "check.skops")
    check = HatCheck(tmp_path / "check.skops", 0.3)
    rows = dets(person(200, head_y=100), worn_hat(200, head_y=100, conf=0.2))
    for colour, status in (((30, 205, 245), "worn"), ((25, 20, 20), "no_hat")):
        decisions = decide(rows, RuleConfig(head_source="pose", hat_conf=0.1))
        assert [d.status for d in decisions] == ["worn"]
        (d,) = check.veto(decisions, _scene(colour))
        assert d.status == status and 0 <= d.why["hat_check"] <= 1
        if status == "no_hat":
            assert d.hat_box is None and "do not look like a worn hard hat" in d.why["rule"] and d.why["hat_conf"] == 0.2
    assert check.n_vetoed == 1


def test_a_missing_or_foreign_hat_check_file_is_a_weights_error(tmp_path):
    from pipeline.screen.detector import dumps

    with pytest.raises(WeightsError, match="does not exist"):
        HatCheck(tmp_path / "none.skops", 0.3)
    (tmp_path / "other.skops").write_bytes(dumps({"task": "screen", "model": None}))
    with pytest.raises(WeightsError, match="not a hat check"):
        HatCheck(tmp_path / "other.skops", 0.3)
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="cannot read hat check file"):
        HatCheck(tmp_path / "junk.skops", 0.3)


def test_the_shipped_check_runs_beside_the_photo_detector_and_refuses_another(tmp_path):
    """It reads the detector's hat scores, so it names the weights and input size it was trained beside."""
    photos = Pipeline.from_specs([CONFIGS / "safety_photos.yaml", CONFIGS / "hardhat_rule_photos.yaml"])
    rule = photos.stages[-1]
    assert rule.hat_check is not None and rule.hat_check.detector["imgsz"] == 512
    (r,) = photos([Frame(0, _scene((30, 205, 245)), 0.0, "test")])
    assert isinstance(r.decisions, list)
    with pytest.raises(ConfigError, match="trained beside") as e:
        Pipeline.from_specs([CONFIGS / "safety_detector.yaml", CONFIGS / "hardhat_rule_photos.yaml"])
    assert "768 px" in str(e.value) and "dvc repro train_hat_check" in str(e.value.fix)
    with pytest.raises(ConfigError, match="no safety_detector before it"):
        load_stage(CONFIGS / "hardhat_rule_photos.yaml").attach([])


def test_the_dvc_command_trains_a_check_beside_the_shipped_detector(tiny_safety, tmp_path):
    """`python -m pipeline.train.hat_check` on synthetic sites (its fallback where the real photos are absent)."""
    import subprocess
    import sys

    p = yaml.safe_load((ROOT / "params.yaml").read_text())["train_hat_check"]
    p |= {"real": None, "data": str(tiny_safety["base"] / "sites"), "out": str(tmp_path / "check.skops")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train_hat_check": p}))
    r = subprocess.run([sys.executable, "-m", "pipeline.train.hat_check", str(tmp_path / "params.yaml"), "train_hat_check"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "training on synthetic sites" in r.stdout
    check = HatCheck(tmp_path / "check.skops", 0.3)
    assert check.info["trained_on"] == "synthetic train sites" and check.info["examples"] >= 10
    stage = load_stage({"type": "hardhat_rule", "hat_check": str(tmp_path / "check.skops")})
    stage.attach([load_stage(CONFIGS / "safety_photos.yaml")])
    fr = FrameResult(Frame(0, _scene((30, 205, 245)), 0.0, "test"))
    fr.detections = dets(person(200, head_y=100), worn_hat(200, head_y=100))
    stage.process([fr])
    assert len(fr.decisions) == 1


def test_the_head_check_takes_back_a_no_hat_call_on_a_hatted_head_and_keeps_a_bare_one(tmp_path):
    """A toy head check fitted on heads under a bright dome (hatted) against skin-and-hair ones (bare): a
    no_hat call on the first becomes unknown, on the second stays, and a worn call is never touched."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from pipeline.safety.colour import head_colour
    from pipeline.safety.head_check import FEATURES, TASK, HeadCheck

    rng = np.random.default_rng(0)
    X, y = [], []
    for i in range(200):
        hatted = i % 2 == 0
        im = np.full((300, 600, 3), (200, 190, 180), np.uint8)
        face = np.clip(np.full((40, 34, 3), (120, 150, 200), float) + rng.normal(0, 10, (40, 34, 3)), 0, 255)
        face[:20] = (235, 235, 235) if hatted else rng.integers(10, 50, 3)  # the upper half: a white hat, or dark hair
        im[80:120, 100:134] = face.astype(np.uint8)
        X.append(head_colour(im, (100, 80, 134, 120)))
        y.append(hatted)
    save(tmp_path / "head.skops", HistGradientBoostingClassifier(max_iter=30).fit(np.array(X), np.array(y)), {}, {},
         TASK, FEATURES)
    check = HeadCheck(tmp_path / "head.skops", 0.9)
    scene = np.full((300, 600, 3), (200, 190, 180), np.uint8)
    for x, upper in ((200, (235, 235, 235)), (400, (20, 30, 45))):
        scene[80:120, x - 17 : x + 17] = (120, 150, 200)
        scene[80:100, x - 17 : x + 17] = upper
    head = lambda x: (2, x - 17, 80, x + 17, 120, 0.8)  # noqa: E731
    d = decide(dets(head(200), head(400)), RuleConfig(head_source="head_box"))
    assert [x.status for x in d] == ["no_hat", "no_hat"]
    out = check.take_back(d, scene)
    assert [x.status for x in out] == ["unknown", "no_hat"] and check.n_taken_back == 1
    assert out[0].why["head_check"] >= 0.9 > out[1].why["head_check"] and out[0].why["no_hat_rule"] == d[0].why["rule"]
    worn = decide(dets(person(200), worn_hat(200)), RuleConfig(head_source="pose"))
    assert check.take_back(worn, scene) == worn
    with pytest.raises(WeightsError, match="not a head check"):
        HeadCheck(ROOT / "data" / "weights" / "hat_check.skops", 0.9)
