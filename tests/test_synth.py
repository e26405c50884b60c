import cv2
import numpy as np
import pytest

from pipeline.components import crop_rect, extract_components
from pipeline.core import DAMAGEABLE
from pipeline.synth.damage import CRACK, REBAR, SPALL, add_damage, derive_state
from pipeline.synth.facade import generate_facade
from pipeline.synth.video import facade_video, frame_labels
from pipeline.sources import open_source


def test_derive_state_rules():
    assert derive_state(0, 0, 0, 1000) == 0
    assert derive_state(5, 0, 0, 1000) == 1
    assert derive_state(50, 0, 0, 1000) == 2  # extensive cracking
    assert derive_state(0, 10, 0, 1000) == 2
    assert derive_state(0, 100, 0, 1000) == 3  # large spalling
    assert derive_state(0, 10, 1, 1000) == 3  # any exposed rebar


def test_facade_labels_agree_with_pixels():
    rng = np.random.default_rng(1)
    f = add_damage(rng, generate_facade(rng, 900))
    assert f.image.shape[:2] == f.components.shape == f.instances.shape == f.damage.shape
    present = set(np.unique(f.components)) - {0}
    assert {1, 2, 3, 7} <= present  # walls, beams, columns, slabs in every facade
    for iid, cls in f.instance_class.items():
        m = f.instances == iid
        if not m.any():
            continue
        assert (f.components[m] == cls).all()
        d = f.damage[m]
        assert f.states[iid] == derive_state((d == CRACK).sum(), (d == SPALL).sum(), (d == REBAR).sum(), m.sum())
        if cls not in DAMAGEABLE:
            assert not d.any()
    assert (f.damage[f.components == 0] == 0).all()
    assert max(f.states.values()) > 0  # some damage was drawn


def test_rebar_only_inside_spalling_and_cracks_are_thin():
    rng = np.random.default_rng(2)
    f = add_damage(rng, generate_facade(rng, 1200), p_state=(0, 0, 0, 1))
    rebar = f.damage == REBAR
    assert rebar.any()
    # every crack pixel has a background or other-class neighbour within 2 px: lines, not blobs
    crack = (f.damage == CRACK).astype(np.uint8)
    assert cv2.erode(crack, np.ones((5, 5), np.uint8)).sum() < 0.05 * crack.sum()


def test_extract_and_crop_components():
    mask = np.zeros((100, 200), np.uint8)
    mask[10:60, 20:120] = 1
    mask[70:90, :] = 7
    dmg = np.zeros_like(mask)
    dmg[20:22, 30:80] = 1
    comps, regions = extract_components(mask, dmg, min_area=100)
    by_cls = {c.class_id: c for c in comps}
    assert set(by_cls) == {1, 7}
    assert by_cls[1].area_px == 50 * 100 and by_cls[1].damage_px["crack"] == 100
    crop = crop_rect(np.dstack([mask * 30] * 3), by_cls[7].rect, 32)
    assert crop.shape == (32, 32, 3) and (crop == 210).mean() > 0.9


@pytest.mark.parametrize("k", [1, 2, 4])
def test_component_rects_match_the_all_pixel_rectangle(k):
    # extract_components takes the rectangle from the outer contour only, and labels a mask enlarged k times
    # (a segmenter run at 1/k scale) at its small size; regions, areas, damage and rectangles must not change
    rng = np.random.default_rng(3)
    mask = np.zeros((180, 320), np.uint8)
    for _ in range(12):
        pts = rng.integers(0, [320, 180], (6, 2)).astype(np.int32)
        cv2.fillPoly(mask, [cv2.convexHull(pts)], int(rng.integers(1, 8)))
    mask[rng.random(mask.shape) < 0.02] = 0  # holes and ragged edges
    mask = np.repeat(np.repeat(mask, k, 0), k, 1)
    dmg = (rng.random(mask.shape) < 0.1).astype(np.uint8)
    comps, regions = extract_components(mask, dmg, min_area=50)
    assert len(comps) > 5
    for c, region in zip(comps, regions):
        x0, y0, x1, y1 = c.box
        assert region.shape == (y1 - y0, x1 - x0) and (mask[y0:y1, x0:x1][region] == c.class_id).all()
        assert c.area_px == region.sum() and c.damage_px["crack"] == dmg[y0:y1, x0:x1][region].sum()
        ref = cv2.minAreaRect(cv2.findNonZero(region.astype(np.uint8)) + np.int32(c.box[:2]))
        assert np.allclose(c.rect[0], ref[0], atol=1e-3) and np.allclose(sorted(c.rect[1]), sorted(ref[1]), atol=1e-3)


def test_video_labels_follow_the_camera(tmp_path):
    meta = facade_video(tmp_path / "c.mp4", seconds=0.5, seed=5, fps=8, size=(320, 180), progress=False)
    assert meta["frames"] == 4
    frames = list(open_source(tmp_path / "c.mp4"))
    assert len(frames) == 4 and frames[0].telemetry is not None
    labels = dict(np.load(tmp_path / "c.labels.npz"))
    comp, inst, dmg = frame_labels(labels, 3)
    assert comp.shape == (180, 320)
    # the camera moves: frame 0 and frame 3 see different parts of the facade
    assert (frame_labels(labels, 0)[1] != inst).any()


def test_a_view_taller_than_the_building_sees_sky_and_ground_not_a_mirrored_building(tmp_path):
    """A portrait frame is taller than any generated facade: every frame must lie inside the (padded) facade, and
    no instance may show as two pieces with background between them, as the renderer's mirrored border drew it."""
    facade_video(tmp_path / "tall.mp4", seconds=0.4, seed=3, fps=5, size=(200, 900), progress=False)
    labels = dict(np.load(tmp_path / "tall.labels.npz"))
    fh, fw = labels["components"].shape
    for i, H in enumerate(labels["homographies"]):
        corners = cv2.perspectiveTransform(np.float64([[[0, 0]], [[200, 0]], [[200, 900]], [[0, 900]]]), H).reshape(4, 2)
        assert (corners >= -1).all() and (corners[:, 0] <= fw + 1).all() and (corners[:, 1] <= fh + 1).all()
        _, inst, _ = frame_labels(labels, i)
        for k in np.unique(inst[inst > 0]):
            rows = np.flatnonzero((inst == k).any(1))
            assert rows[-1] - rows[0] + 1 == len(rows), f"instance {k} is drawn twice in frame {i}"


def test_generated_dataset_is_the_same_bytes_on_a_rerun(tmp_path):
    """dvc repro must rebuild data/synth with the hash dvc.lock records; unseeded photometric noise broke that."""
    import hashlib

    from pipeline.synth.dataset import generate

    def digest(root):
        return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    for run in ("a", "b"):
        generate(tmp_path / run, {"train": 3, "val": 3}, size=128, workers=1)
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert len(a) > 6 and a == b


def test_a_clip_is_the_same_bytes_whatever_ran_before_it(tmp_path):
    """Its sensor noise is seeded from the clip's seed: tests that share a clip see the same frames in any order."""
    import random

    out = []
    for k in range(2):
        np.random.seed(k)
        random.seed(k)
        p = tmp_path / str(k) / "c.mp4"
        p.parent.mkdir()
        facade_video(p, seconds=0.5, seed=3, fps=6, size=(160, 96), progress=False)
        out.append(p.read_bytes())
    assert out[0] == out[1]
