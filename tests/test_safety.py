"""Site safety: zones, status over time, alerts through a real webhook on loopback, and the flow end to end."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.safety.alerts import AlertConfig, AlertSink
from pipeline.safety.core import call_score
from pipeline.safety.status import StatusConfig, WorkerStatus
from pipeline.safety.zones import Zone, ZoneMap
from tests.conftest import ROOT, run_cli


class Hook:
    """A real HTTP server on loopback that records every POSTed alert."""

    def __init__(self, port: int = 0):
        received = self.received = []

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_self_intersecting_zone_is_a_config_error(tmp_path):
    from flows.site_safety import load_config

    cfg = yaml.safe_load((ROOT / "flows/configs/site-safety.yaml").read_text())
    cfg["stages"] = [str(ROOT / "stages/configs/safety_detector.yaml"), str(ROOT / "stages/configs/hardhat_rule.yaml")]
    cfg["zones"] = [{"name": "bowtie", "kind": "mandatory", "polygon": [[0, 0], [10, 10], [10, 0], [0, 10]]}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "bad.yaml" in msg and "zones" in msg and "Self-intersection" in msg
    r = run_cli("run", "site-safety", "--source", str(tmp_path), "--config", path, "--out", tmp_path / "o")
    assert r.returncode == 2 and "Self-intersection" in r.stderr and "Traceback" not in r.stderr


def test_zones_mandatory_and_ignored():
    zones = ZoneMap([Zone(name="scaffold", kind="mandatory", polygon=[(0, 0), (100, 0), (100, 100), (0, 100)]),
                     Zone(name="office", kind="ignore", normalized=True, polygon=[(0, 0), (0.1, 0), (0.1, 0.1), (0, 0.1)])],
                    (200, 200))
    assert zones.locate((50, 50)) == (True, "scaffold")
    assert zones.locate((150, 150)) == (False, None)  # outside every mandatory zone
    assert zones.locate((10, 10)) == (False, None)  # inside the ignored office
    assert ZoneMap([], (200, 200)).locate((150, 150)) == (True, None)


def test_status_needs_seconds_not_a_single_frame():
    st = WorkerStatus(StatusConfig(violation_after_s=2.0, clear_after_s=1.0, forget_after_s=5))
    events = []
    # one missed hat for one frame raises nothing
    for t, s in [(0, "worn"), (0.5, "no_hat"), (1.0, "worn")]:
        events += st.update(t, {7: s})
    assert events == []
    # unknown frames neither raise nor clear; 2 s without a hat raise one violation
    for t, s in [(2.0, "no_hat"), (3.0, "unknown"), (4.0, "no_hat"), (4.5, "no_hat")]:
        events += st.update(t, {7: s})
    assert [e["type"] for e in events] == ["violation_start"] and events[0]["time_s"] == 4.0
    for t in (5.0, 5.5, 6.0):
        events += st.update(t, {7: "worn"})
    assert [e["type"] for e in events] == ["violation_start", "violation_end"] and events[1]["time_s"] == 6.0
    # a violating worker who leaves the view is closed, not left open
    for t in (7, 9.5):
        events += st.update(t, {8: "no_hat"})
    events += st.update(20, {})
    assert events[-1] == {"type": "violation_end", "track_id": 8, "time_s": 20, "reason": "left view"}


def test_alerts_wait_on_disk_while_the_webhook_is_down(tmp_path):
    port = free_port()  # nothing listens here yet: the webhook is down
    sink = AlertSink(tmp_path, AlertConfig(webhook=f"http://127.0.0.1:{port}/hook", retry_first_s=0.05, timeout_s=1))
    img = np.zeros((40, 60, 3), np.uint8)
    for i in range(3):
        sink.emit({"type": "violation_start", "track_id": i, "frame": 10 * i, "time_s": i}, img)
    assert len(sink.outbox.pending()) == 3 and sink.outbox.failures >= 1
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == 3
    assert len(list((tmp_path / "snapshots").glob("*.jpg"))) == 3
    hook = Hook(port)  # the webhook comes back on the same port
    try:
        summary = sink.close()
    finally:
        hook.close()
    assert summary["pending"] == 0 and summary["delivered"] == 3
    assert [a["track_id"] for a in hook.received] == [0, 1, 2]  # none lost, oldest first
    assert not list((tmp_path / "outbox").glob("*.json"))


def test_alerts_retry_command_sends_what_waits(tmp_path):
    port = free_port()
    sink = AlertSink(tmp_path, AlertConfig(webhook=f"http://127.0.0.1:{port}/hook", timeout_s=1))
    sink.emit({"type": "violation_start", "track_id": 3, "frame": 5, "time_s": 1.0})
    sink.close()
    (tmp_path / "run.json").write_text(json.dumps({"flow": {"alerts": {"webhook": f"http://127.0.0.1:{port}/hook"}}}))
    r = run_cli("alerts", "retry", "--out", tmp_path)
    assert r.returncode == 1 and "1 still waiting" in r.stdout
    hook = Hook(port)
    try:
        r = run_cli("alerts", "retry", "--out", tmp_path)
    finally:
        hook.close()
    assert r.returncode == 0 and "delivered 1" in r.stdout and hook.received[0]["track_id"] == 3


def test_site_safety_flow_writes_everything(tiny_safety, tmp_path):
    hook = Hook()
    cfg = yaml.safe_load(tiny_safety["flow"].read_text())
    cfg["alerts"] = {"webhook": hook.url}
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    try:
        r = run_cli("run", "site-safety", "--source", tiny_safety["clip"], "--config", path, "--out", out)
    finally:
        hook.close()
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in events] == list(range(15))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == 15 and (out / "annotated.mp4").stat().st_size > 0
    alerts = (out / "alerts.jsonl").read_text().splitlines()
    # every alert the flow raised reached the webhook
    assert summary["alerts"]["alerts"] == len(alerts) == len(hook.received) and summary["alerts"]["pending"] == 0
    assert not (out / "parts").exists()
    page = (out / "report.html").read_text()
    assert "Site safety" in page and "data:image/png;base64" in page and f"{len(summary['violations'])} violations" in page


def test_site_safety_bad_inputs(tiny_safety, tmp_path):
    r = run_cli("run", "site-safety", "--source", "7", "--config", tiny_safety["flow"], "--out", tmp_path / "o")
    assert r.returncode == 2 and "cannot open camera '7'" in r.stderr and "fix:" in r.stderr
    r = run_cli("schedule", "site-safety", "--cron", "61 7 * * *", "--source", tiny_safety["clip"],
                "--out", tmp_path / "s")
    assert r.returncode == 2 and "Invalid cron" in r.stderr and "minute hour" in r.stderr
    port = free_port()
    r = run_cli("schedule", "site-safety", "--cron", "0 7 * * 1-5", "--source", tiny_safety["clip"],
                "--out", tmp_path / "s", env={"PREFECT_API_URL": f"http://127.0.0.1:{port}/api"})
    assert r.returncode == 2 and "unreachable" in r.stderr and "prefect server start" in r.stderr


def test_rule_on_synthetic_labels_reaches_every_situation():
    """The rule, fed the generator's own boxes, calls worn hats worn and held/ground/table hats not worn."""
    from pipeline.safety.core import Detections
    from pipeline.safety.rule import RuleConfig, decide
    from pipeline.synth.site import labels, random_scene

    seen, wrong = {"worn": 0, "held": 0, "ground": 0, "table": 0}, 0
    for seed in range(60):
        lab = labels(random_scene(np.random.default_rng(seed)))
        rows = [(0, p["box"], p["head"]) for p in lab["persons"]] + [(1, h["box"], None) for h in lab["hats"]]
        if not rows:
            continue
        det = Detections(np.array([r[1] for r in rows]), np.ones(len(rows)), np.array([r[0] for r in rows]),
                         np.array([r[2] if r[2] is not None else (np.nan, np.nan) for r in rows], float),
                         np.ones(len(rows)), np.arange(len(rows)))
        got = [d.status for d in decide(det, RuleConfig(head_source="pose"))]
        wrong += sum((g == "worn") != p["wears"] for g, p in zip(got, lab["persons"]))
        for h in lab["hats"]:
            seen[h["situation"]] += 1
    assert all(seen.values()), seen
    assert wrong <= 0.02 * sum(len(labels(random_scene(np.random.default_rng(s)))["persons"]) for s in range(60))


def test_predict_writes_boxes_head_points_and_decisions(tiny_safety, tmp_path):
    """Photos through the shipped photo detector config and the hat rule: one JSON line per image, with
    the boxes the model gives on its own (untracked: the photos are unrelated), and no masks."""
    import cv2

    from pipeline.models.yolo import load_yolo
    from pipeline.safety.core import Detections

    imgs = tmp_path / "photos"
    imgs.mkdir()
    src = sorted((tiny_safety["base"] / "sites" / "images" / "train").glob("*.jpg"))[:3]
    for p in src:
        (imgs / p.name).write_bytes(p.read_bytes())
    # the photo detector without its test-time passes (tests/test_tta.py), so its boxes are the model's own
    shipped, rule = ROOT / "stages" / "configs" / "safety_photos.yaml", ROOT / "stages" / "configs" / "hardhat_rule.yaml"
    cfg = yaml.safe_load(shipped.read_text())
    cfg |= {k: str((shipped.parent / cfg[k]).resolve()) for k in ("model", "gate")} | {"tta": None}
    det = tmp_path / "safety_photos_one_pass.yaml"
    det.write_text(yaml.safe_dump(cfg))
    r = run_cli("predict", det, rule, "--source", imgs, "--out", tmp_path / "pred", "--annotate")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    assert [x["image"].rsplit("/", 1)[-1] for x in lines] == [p.name for p in src]
    assert not list((tmp_path / "pred").glob("*.png"))
    model = load_yolo(ROOT / "data" / "weights" / "safety.pt")
    n_boxes = n_decisions = 0
    for line, p in zip(lines, src):
        h, w = cv2.imread(str(p)).shape[:2]
        direct = Detections.from_ultralytics(model.predict(str(p), imgsz=cfg["imgsz"], conf=cfg["conf"], iou=cfg["iou"],
                                                           verbose=False)[0])
        assert len(line["detections"]) == len(direct)
        for d in line["detections"]:
            assert d["class"] in ("person", "hardhat", "head") and d["score"] >= cfg["conf"] and "track_id" not in d
            assert -1 <= d["box"][0] < d["box"][2] <= w + 1 and -1 <= d["box"][1] < d["box"][3] <= h + 1
            assert ("head" in d) == (d["class"] in ("person", "head"))
        assert all(x["status"] in ("worn", "no_hat", "unknown") for x in line["decisions"])
        # --annotate: the photo drawn over, a filled dot on each decided head point
        drawn, photo = cv2.imread(str(tmp_path / "pred" / "annotated" / f"{p.stem}.jpg")), cv2.imread(str(p))
        assert drawn.shape == photo.shape
        for x in (x for x in line["decisions"] if x["status"] != "unknown"):  # unknown's grey may match the ground
            px, py = (int(round(v)) for v in x["head"])
            patch = (slice(max(py - 1, 0), py + 2), slice(max(px - 1, 0), px + 2))
            assert np.abs(drawn[patch].astype(int) - photo[patch]).mean() > 20, (p.name, x)
        n_boxes += len(direct)
        n_decisions += len(line["decisions"])
    assert n_boxes > 0 and n_decisions > 0, "nothing found on synthetic sites: the checks above saw no boxes"
    worn, no_hat, unknown = (sum(x["status"] == s for line in lines for x in line["decisions"])
                             for s in ("worn", "no_hat", "unknown"))
    assert f"hard-hat decisions: {worn} worn, {no_hat} no_hat, {unknown} unknown" in r.stdout, r.stdout
    # the review page lists every drawn photo, the one with the surest no_hat call first
    page = (tmp_path / "pred" / "annotated" / "index.html").read_text()
    assert all(f"<b>{p.name}</b>" in page for p in src)
    scores = {x["image"].rsplit("/", 1)[-1]: max((call_score(d) for d in x["decisions"] if d["status"] == "no_hat"), default=-1)
              for x in lines}
    assert page.index(f"<b>{max(scores, key=scores.get)}</b>") == page.index("<b>")
    r = run_cli("predict", rule, "--source", imgs, "--out", tmp_path / "p2")
    assert r.returncode == 2 and "needs ['detections']" in r.stderr and "fix:" in r.stderr


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "real" / "footage" / "site_timelapse.mp4").exists(),
                    reason="real footage not present")
def test_shipped_site_flow_on_a_real_site_timelapse(tmp_path):
    """The product as shipped (default flow config: trained detector, its gate, the screen, the rule)
    on a real 1 fps 720p site time-lapse: every frame is processed, each computed one is screened,
    and the outputs are written."""
    src = ROOT.parent / "shared" / "data" / "real" / "footage" / "site_timelapse.mp4"
    out = tmp_path / "run"
    r = run_cli("run", "site-safety", "--source", src, "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    assert [e["frame"] for e in events] == list(range(8))
    assert all(e["screen"] for e in events if not e["reused"]), events[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == 8 and (out / "annotated.mp4").stat().st_size > 0
    assert "Site safety" in (out / "report.html").read_text()
