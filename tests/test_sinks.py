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
