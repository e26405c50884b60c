import cv2
import numpy as np

from pipeline.linking import Registrar, link, merge_fragments, presence, to_mosaic
from pipeline.rollup import roll_up
from pipeline.sources import open_source


def test_registrar_follows_a_synthetic_pass(clip):
    """Frame 0 is the mosaic plane; each frame's homography must agree with the generator's."""
    labels = np.load(clip.with_suffix(".labels.npz"))
    Hs = labels["homographies"]
    reg = Registrar(320)
    errs = []
    for f in open_source(clip):
        H, seg = reg.update(f.image)
        assert seg == 0
        # true frame->frame0 mapping: frame->facade, then facade->frame0
        true = np.linalg.inv(Hs[0]) @ Hs[f.index]
        p = np.array([240.0, 136.0, 1.0])
        a, b = H @ p, true @ p
        errs.append(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2]))
    assert max(errs) < 6.0, errs


def test_low_contrast_frames_are_equalised_before_matching(clip):
    """A pass faded to a tenth of its contrast (as thermal footage or haze looks) leaves ORB no corners at all;
    frames with few keypoints are equalised (CLAHE) first, and the faded pass registers as the plain one does."""
    Hs = np.load(clip.with_suffix(".labels.npz"))["homographies"]
    faded = [np.clip((f.image.astype(np.float32) - 128) * 0.1 + 128, 0, 255).astype(np.uint8) for f in open_source(clip)]
    p = np.array([240.0, 136.0, 1.0])

    def run(**kw):
        reg, errs = Registrar(320, **kw), []
        for i, im in enumerate(faded):
            H, _ = reg.update(im)
            a, b = H @ p, np.linalg.inv(Hs[0]) @ Hs[i] @ p
            errs.append(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2]))
        return reg.segments, max(errs)

    segments, err = run()
    # CLAHE lifts the sensor noise with the faded signal: over nine draws of the clip's noise, the worst frame's
    # error ran 1.4-7.1 px (a plain pass: under 0.6)
    assert segments == 1 and err < 10.0, (segments, err)
    assert run(low_features=0)[0] == len(faded)  # never equalised: no frame matches any other


def test_registration_failure_starts_a_new_segment():
    reg = Registrar(160)
    rng = np.random.default_rng(0)
    reg.update(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    _, seg = reg.update(np.zeros((120, 160, 3), np.uint8))  # nothing to match
    assert seg == 1


def test_one_unmatched_frame_does_not_split_the_pass(clip):
    """A blank frame (a dropout, a frame blurred beyond matching) starts a segment of its own, and the
    frame after it rejoins the pass through the frames kept in `history`; with no history it cannot."""
    frames = [f.image for f in open_source(clip)][:6]
    frames[3] = np.zeros_like(frames[3])
    for history, want in ((3, [0, 0, 0, 1, 0, 0]), (1, [0, 0, 0, 1, 2, 2])):
        reg = Registrar(320, history)
        assert [reg.update(im)[1] for im in frames] == want
        assert reg.segments == max(want) + 1


def test_keyframe_blend_drifts_less_than_chaining(clip):
    """Chaining each frame to the one before compounds its errors; blending in a keyframe's estimate
    keeps the mapping near the generator's (benchmarks/registration.py measures this on 720p passes)."""
    Hs = np.load(clip.with_suffix(".labels.npz"))["homographies"]
    frames = [f.image for f in open_source(clip)]
    grid = np.array([[x, y, 1.0] for x in (60.0, 240.0, 420.0) for y in (40.0, 136.0, 232.0)]).T

    def mean_error(reg):
        errs = []
        for i, im in enumerate(frames):
            H, _ = reg.update(im)
            a, b = H @ grid, np.linalg.inv(Hs[0]) @ Hs[i] @ grid
            errs.append(np.linalg.norm(a[:2] / a[2] - b[:2] / b[2], axis=0).mean())
        return np.mean(errs)

    shipped = mean_error(Registrar(320))
    assert shipped < mean_error(Registrar(320, history=1, key_overlap=2.0))
    # facades repeat, so many matches are wrong; USAC's locally optimised fits beat plain RANSAC's
    # (0.33 against 0.73 px on this clip; 0.28 / 0.80 and 0.36 / 0.67 on seeds 5 and 7)
    assert shipped < 0.8 * mean_error(Registrar(320, key_blend=0.2, method=cv2.RANSAC))


def _obs(frame, x, cls=1, state=0, seg=0):
    rect = ((x + 50.0, 50.0), (100.0, 80.0), 0.0)
    return {"frame": frame, "class_id": cls, "segment": seg, "poly": to_mosaic(rect, np.eye(3)), "state": state,
            "damage_ratio": 0.01 * state, "damage_px": {}, "area": 8000, "rect": rect, "gps": None}


def test_link_merges_overlapping_views_only():
    obs = [_obs(f, 2 * f) for f in range(10)]  # one wall drifting slowly
    obs += [_obs(f, 500) for f in range(10)]  # another wall far away
    obs += [_obs(f, 2 * f, cls=3) for f in range(10)]  # a column in the same place: other class
    obs += [_obs(f, 2 * f, seg=1) for f in range(10, 12)]  # after a cut: never linked
    groups = link(obs, iou=0.3, max_gap=5)
    assert sorted(len(g) for g in groups) == [2, 10, 10, 10]


def test_a_fragment_inside_a_longer_track_of_its_class_is_folded_in():
    wall = [_obs(f, 0) for f in range(10)]  # 100 x 80 at x 0-100
    piece = [{**_obs(f, 20), "rect": ((70.0, 50.0), (40.0, 40.0), 0.0),
              "poly": to_mosaic(((70.0, 50.0), (40.0, 40.0), 0.0), np.eye(3)), "area": 1600} for f in (4, 5)]
    column = [{**o, "class_id": 3} for o in piece]  # same place, other class: a column is not a piece of a wall
    late = [{**o, "frame": o["frame"] + 40} for o in piece]  # the same place 35 frames after the wall was last seen
    out = merge_fragments([wall, piece, column, late], max_gap=30)
    assert sorted(len(t) for t in out) == [2, 2, 12]
    assert [o["frame"] for o in max(out, key=len)] == sorted(o["frame"] for o in wall + piece)


def test_rollup_uses_the_median_state_and_ranks_worst():
    obs = [_obs(f, 0, state=s) for f, s in enumerate([2, 2, 3, 2, 0])]
    obs += [_obs(f, 400, state=0) for f in range(5)]
    r = roll_up(obs, 0.3, 5, worst_k=1)
    assert r["unique_components"] == 2
    assert r["per_type"]["wall"]["states"] == {"none": 1, "light": 0, "moderate": 1, "severe": 0}
    assert r["worst"][0]["state"] == "moderate" and r["worst"][0]["views"] == 5


def test_a_components_state_trusts_whole_views_over_slivers():
    """Three views clipped by the frame's edge (a fifth of the area) read `severe`, two whole views `none`:
    by view count the median is severe, by area it is none."""
    obs = [{**_obs(f, 0, state=3), "area": 1600} for f in range(3)] + [_obs(f, 0, state=0) for f in (3, 4)]
    c = roll_up(obs, 0.3, 5, worst_k=1)["components"][0]
    assert c["state"] == "none" and c["state_votes"] == {"severe": 3, "none": 2}


def test_damage_seen_in_one_frame_is_listed_apart_not_dropped():
    """Single views are left out of the counts on a long pass, but a damaged one is kept in
    `unlinked_damage` (registration breaks make real components single views)."""
    obs = [_obs(f, 0) for f in range(6)]  # a wall seen throughout
    obs += [_obs(2, 400, state=3, seg=1), _obs(4, 800, state=0, seg=2)]  # one-frame views after breaks
    r = roll_up(obs, 0.3, 5, worst_k=3)
    assert r["unique_components"] == 1 and r["dropped_single_views"] == 2
    assert [(u["state"], u["best_frame"]) for u in r["unlinked_damage"]] == [("severe", 2)]


def _footprint(frame, x0, seg=0, w=300.0, h=200.0):
    return [frame, seg, [[x0, 0.0], [x0 + w, 0.0], [x0 + w, h], [x0, h]]]


def test_a_component_seen_in_few_of_the_frames_that_show_its_place_is_left_out_as_transient():
    """A beam read into a wall's texture for two of the ten frames that show it is not a beam; a column the
    camera leaves behind after frame 5 was seen in every frame that showed it and stays."""
    frames = [_footprint(f, 10.0 * f) for f in range(10)]  # the camera pans right by 10 px a frame
    obs = [_obs(f, 100) for f in range(10)]  # a wall at x 100-200: in view throughout
    obs += [{**_obs(f, 120, cls=2), "area": 3000} for f in (4, 5)]  # a beam inside it, twice
    obs += [_obs(f, 0, cls=3) for f in range(6)]  # a column at x 0-100, under half in view from frame 6 on
    r = roll_up(obs, 0.3, 5, worst_k=3, footprints=frames, min_presence=0.3)
    assert sorted(c["class"] for c in r["components"]) == ["column", "wall"] and r["dropped_transient"] == 1
    assert {c["class"]: c["presence"] for c in r["components"]} == {"wall": 1.0, "column": 1.0}
    # without footprints (or with the filter off) every linked track is kept
    assert roll_up(obs, 0.3, 5, worst_k=3)["unique_components"] == 3
    assert roll_up(obs, 0.3, 5, worst_k=3, footprints=frames, min_presence=0.0)["unique_components"] == 3
    assert presence([[o for o in obs if o["class_id"] == 2]], frames, max_gap=5) == [0.2]
