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
