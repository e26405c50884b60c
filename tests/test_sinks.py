import json

from pipeline.sinks import EventLog, atomic_json


def test_event_log_resume_cuts_back_to_the_last_committed_chunk(tmp_path):
    p = tmp_path / "events.jsonl"
    log = EventLog(p)
    log.append({"frame": 0})
    log.append({"frame": 1})
    committed = log.commit()
    log.append({"frame": 2})  # a chunk that never finished
    log.fh.write(b'{"frame": 3, "comp')  # and a line cut off by kill -9
    log.close()
    log = EventLog(p, resume_offset=committed)
    log.append({"frame": 2})
    log.commit()
    log.close()
    assert [json.loads(x)["frame"] for x in p.read_text().splitlines()] == [0, 1, 2]


def test_fresh_event_log_starts_empty(tmp_path):
    p = tmp_path / "events.jsonl"
    p.write_text('{"old": true}\n')
    EventLog(p).close()
    assert p.read_text() == ""


def test_atomic_json_leaves_no_temporary_files(tmp_path):
    atomic_json(tmp_path / "a" / "s.json", {"x": 1})
    atomic_json(tmp_path / "a" / "s.json", {"x": 2})
    assert json.loads((tmp_path / "a" / "s.json").read_text()) == {"x": 2}
    assert [f.name for f in (tmp_path / "a").iterdir()] == ["s.json"]


def test_frame_gate_reuses_near_duplicates_and_bounds_staleness():
    import numpy as np

    from pipeline.core import Frame
    from pipeline.runner import Pipeline
    from pipeline.reuse import ReuseConfig

    calls = []

    class Count:
        def process(self, batch):
            calls.extend(r.frame.index for r in batch)
            for r in batch:
                r.decisions = [r.frame.index]

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (72, 128, 3), dtype=np.uint8)
    other = rng.integers(0, 255, (72, 128, 3), dtype=np.uint8)
    imgs = [base, base, base, base, other, other, base]
    frames = [Frame(i, im, i / 10, "t") for i, im in enumerate(imgs)]
    pipe = Pipeline([Count()], ReuseConfig(enabled=True, max_diff=1.0, max_run=2))
    out = pipe(frames[:3]) + pipe(frames[3:])  # the reference carries across batches
    assert calls == [0, 3, 4, 6]  # frames 1-2 reuse 0; 3 is a third repeat (max_run); 5 reuses 4
    assert [r.decisions[0] for r in out] == [0, 0, 0, 3, 4, 4, 6]
    assert [r.reused for r in out] == [False, True, True, False, False, True, False] and pipe.reused == 3
    pipe.reset()
    assert pipe([frames[0]])[0].reused is False  # a new run starts without a reference


def test_motion_gate_shifts_the_reference_masks_onto_a_moving_camera():
    import cv2
    import numpy as np

    from pipeline.components import extract_components
    from pipeline.core import Frame
    from pipeline.reuse import ReuseConfig
    from pipeline.runner import Pipeline

    calls, motions = [], []

    class Bright:  # a "model" whose mask is tied to the pixels, so a correct shift reproduces it
        def process(self, batch):
            for r in batch:
                calls.append(r.frame.index)
                motions.append(r.motion)
                r.damage_mask = (r.frame.image[..., 0] > 200).astype(np.uint8)
                r.component_mask = r.damage_mask.copy()
                r.components, _ = extract_components(r.component_mask, r.damage_mask, 30, classes=[1])

    rng = np.random.default_rng(1)
    scene = cv2.GaussianBlur(rng.integers(0, 255, (500, 1200, 3), dtype=np.uint8), (9, 9), 0)
    for _ in range(25):
        x, y = rng.integers(20, 1150), rng.integers(20, 450)
        cv2.rectangle(scene, (int(x), int(y)), (int(x) + 30, int(y) + 20), (255, 255, 255), -1)
    # the camera pans right 4 px per frame, then cuts to another scene
    imgs = [scene[50:410, 40 + 4 * i : 680 + 4 * i] for i in range(8)] + [np.ascontiguousarray(scene[::-1, ::-1][50:410, :640])]
    frames = [Frame(i, np.ascontiguousarray(im), i / 30, "t") for i, im in enumerate(imgs)]
    pipe = Pipeline([Bright()], ReuseConfig(enabled=True, mode="motion", max_diff=4, max_run=3, max_shift=0.1))
    out = pipe(frames[:5]) + pipe(frames[5:])
    assert calls == [0, 4, 8]  # runs of 3 reuse, then the cut is computed
    # frame 4 still matches frame 0 (computed only because the run ran out): stages are told the shift
    assert motions[0] is None and motions[2] is None and np.allclose(motions[1], (-16, 0), atol=1)
    for r in out:
        truth = (r.frame.image[..., 0] > 200).astype(np.uint8)
        inner = (slice(0, None), slice(0, -16))  # the 4..12 px strip that entered on the right is unseen
        assert (r.damage_mask[inner] == truth[inner]).mean() > 0.995, r.frame.index
        if r.reused:
            boxes = np.array([c.box for c in extract_components(truth, truth, 30, classes=[1])[0]])
            for c in r.components:  # each moved component is where the frame shows it (within 1 px), unless at the border
                near = np.abs(boxes - np.array(c.box)).max(1).min() <= 1
                assert near or c.box[0] <= 0 or c.box[2] >= 640 - 16, (r.frame.index, c.box)
