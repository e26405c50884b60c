"""Test-time augmentation of the site detector on photos: passes mapped back and merged."""

import cv2
import numpy as np
import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.safety.tta import found_by_extra_passes, merge, mirrored
from stages import load_stage
from tests.conftest import ROOT
from tests.test_rule import HAT, HEAD, PERSON, dets, person, worn_hat

CONFIGS = ROOT / "stages" / "configs"


def _photo_detector(**extra) -> dict:
    cfg = yaml.safe_load((CONFIGS / "safety_photos.yaml").read_text()) | extra
    for k in ("model", "gate"):
        cfg[k] = str((CONFIGS / cfg[k]).resolve())
    return cfg


def test_a_mirrored_pass_maps_back_onto_the_image():
    d = dets(person(30, head_y=50), worn_hat(30, head_y=50))
    m = mirrored(d, 100)
    assert m.xyxy[0, [0, 2]] == pytest.approx([100 - 70, 100 + 10]) and m.keypoints[0, 0] == pytest.approx(70)
    assert (m.xyxy[:, 0] < m.xyxy[:, 2]).all()
    back = mirrored(m, 100)
    assert np.allclose(back.xyxy, d.xyxy) and np.allclose(back.keypoints, d.keypoints, equal_nan=True)
    assert np.allclose(d.xyxy[0], [-10, 30.5, 70, 330.5])  # the input is left as it was


def test_heads_merge_as_a_union_and_a_hat_one_pass_alone_saw_is_scored_down():
    plain = dets(person(100, conf=0.8), (HEAD, 290, 40, 310, 60, 0.5), worn_hat(100, conf=0.6))
    other = dets(person(102, conf=0.7), (HEAD, 400, 40, 420, 60, 0.4), worn_hat(101, conf=0.4), worn_hat(300, conf=0.3))
    m = merge([plain, other], iou=0.55, hats="agree", heads="union")
    people, heads, hats = (m[m.class_id == c] for c in (PERSON, HEAD, HAT))
    assert people.confidence.tolist() == [0.8] and people.keypoints[0, 0] == 100  # the surer box, its own point
    assert sorted(heads.confidence) == [0.4, 0.5]  # each pass's extra head kept
    by_x = hats[np.argsort(hats.xyxy[:, 0])]
    assert by_x.confidence == pytest.approx([0.5, 0.15])  # seen twice: mean score; once: half its score
    assert by_x.xyxy[0, 0] == pytest.approx(100 - 1.25 * 19.5 + 0.4)  # score-weighted mean box
    assert found_by_extra_passes(m, plain, 0.55) == 1  # the head at x 400: hats and the shared person do not count
    union = merge([plain, other], iou=0.55, hats="union")
    assert sorted(union[union.class_id == HAT].confidence) == [0.3, 0.6]
    boost = merge([plain, other], iou=0.55, hats="boost", heads="boost")
    # the surest box of each cluster, scored down by the share of passes that missed it
    assert sorted(boost[boost.class_id == HEAD].confidence) == pytest.approx([0.3, 0.375])
    assert sorted(boost[boost.class_id == PERSON].confidence) == pytest.approx([0.8])
    assert sorted(boost[boost.class_id == HAT].confidence) == pytest.approx([0.225, 0.6])


def test_flipping_the_photo_flips_what_a_mirrored_tta_pass_finds(tmp_path):
    """With `tta: {flip: true}` the two passes over a photo are the plain pass over it and over its mirror
    image, so the detections of the mirrored photo are those of the photo, mirrored."""
    real = ROOT.parent / "shared" / "data" / "real" / "hardhat_workers" / "images" / "val"
    photos = sorted(real.glob("*.jpg"))[:3] if real.exists() else sorted((ROOT / "data" / "sites" / "images" / "val").glob("*"))[:3]
    if not photos:
        pytest.skip("no real or synthetic site photos")
    det = load_stage(_photo_detector(tta={"flip": True, "heads": "union", "hats": "union"}))
    plain = load_stage(_photo_detector(tta=None))
    for p in photos:
        im = cv2.resize(cv2.imread(str(p)), (512, 512))  # square at the input size: no letterbox padding to split
        (a,), (b,) = det.backend([im], False), det.backend([np.ascontiguousarray(im[:, ::-1])], False)
        b = mirrored(b, 512)
        assert len(a) == len(b) and len(a) >= len(plain.backend([im], False)[0].of("head"))
        key = lambda d: np.lexsort((d.xyxy[:, 1], d.xyxy[:, 0], d.class_id))  # noqa: E731
        assert np.allclose(a.xyxy[key(a)], b.xyxy[key(b)], atol=1.0)
        assert np.allclose(a.confidence[key(a)], b.confidence[key(b)], atol=1e-3)


def test_tta_is_for_photos_and_must_ask_for_a_pass():
    with pytest.raises(ConfigError, match="tracker: null"):
        load_stage(_photo_detector(tta={"flip": True}, tracker="bytetrack.yaml"))
    with pytest.raises(ConfigError, match="no extra pass"):
        load_stage(_photo_detector(tta={"flip": False}))
    with pytest.raises(ConfigError, match="scales"):
        load_stage(_photo_detector(tta={"scales": [640]}))
    with pytest.raises(ConfigError, match="tta.sizes.0"):
        load_stage(_photo_detector(tta={"sizes": [-5]}))


def test_a_hat_check_refuses_a_detector_with_other_passes():
    rule = load_stage(CONFIGS / "hardhat_rule_photos.yaml")
    want = rule.hat_check.detector.get("tta")
    other = {"flip": True, "sizes": [704]} if want else {"flip": True}
    with pytest.raises(ConfigError, match="trained beside") as e:
        rule.attach([load_stage(_photo_detector(tta=other))])
    assert "704" in str(e.value) or "with tta" in str(e.value)
