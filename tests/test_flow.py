"""The damage-survey flow, run for real through the CLI and Prefect's embedded server."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow

GUARD = textwrap.dedent('''
    import os, socket
    _log = os.environ["NET_GUARD_LOG"]
    def _local(host):
        return isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1", "0.0.0.0", "") or host.startswith("/"))
    def _note(what):
        with open(_log, "a") as fh:
            fh.write(f"{what}\\n")
    _connect, _gai = socket.socket.connect, socket.getaddrinfo
    def connect(self, addr):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(addr[0]):
            _note(f"connect {addr}")
            raise OSError("non-loopback connection blocked by the test")
        return _connect(self, addr)
    def getaddrinfo(host, *a, **k):
        if host is not None and not _local(host if isinstance(host, str) else host.decode()):
            _note(f"resolve {host}")
        return _gai(host, *a, **k)
    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
''')


@pytest.fixture(scope="module")
def guard(tmp_path_factory):
    d = tmp_path_factory.mktemp("guard")
    (d / "sitecustomize.py").write_text(GUARD)
    log = d / "net.log"
    env = {"PYTHONPATH": f"{d}{os.pathsep}{ROOT}", "NET_GUARD_LOG": str(log)}
    # the guard must see a non-loopback attempt, or a clean log below would prove nothing
    probe = subprocess.run([sys.executable, "-c", "import socket\ntry:\n socket.create_connection(('192.0.2.1', 80), timeout=0.1)\nexcept OSError: pass"],
                           env={**os.environ, **env})
    assert probe.returncode == 0 and "192.0.2.1" in log.read_text()
    log.unlink()
    return env, log


@pytest.fixture(scope="module")
def survey(tiny, clip, guard, tmp_path_factory):
    env, log = guard
    out = tmp_path_factory.mktemp("survey") / "out"
    r = run_cli("run", "damage-survey", "--source", clip, "--out", out, "--config", tiny["flow"], env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r, log


def test_flow_writes_every_output(survey, clip):
    out, r, _ = survey
    assert "report:" in r.stdout
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    n = int(json.loads(clip.with_suffix(".json").read_text())["frames"])
    assert [e["frame"] for e in events] == list(range(n))
    assert events[0]["gps"]["lat"] is not None  # .srt telemetry made it through
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == n
    assert set(summary["rollup"]["per_type"]) == {"wall", "beam", "column", "window_frame", "window_pane", "balcony", "slab"}
    assert summary["registration"] == {"segments": 1}  # the synthetic pass registers as one stretch
    # every frame's outline in the mosaic plane is kept for the roll-up's presence filter
    feet = [f for m in sorted((out / "chunks").glob("chunk_*.json")) for f in json.loads(m.read_text())["footprints"]]
    assert [f[0] for f in feet] == list(range(n)) and all(len(f[2]) == 4 for f in feet)
    assert all(0 < c["presence"] <= 1 for c in summary["rollup"]["components"])
    assert isinstance(summary["rollup"]["dropped_transient"], int)
    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    html = (out / "report.html").read_text()
    assert "Damage survey" in html and html.count("data:image/png;base64") >= 3
    # the default budget reuses shifted results on the moving clip, and says so
    c = summary["compute"]
    assert c["budget"] == "balanced" and 0 < c["frames_reused"] < n and c["frames_reused"] == sum(e["reused"] for e in events)
    assert f"{c['frames_reused']} of {n} frames" in html
    assert not (out / "parts").exists() and not list(out.rglob(".*.tmp*"))


def test_flow_makes_no_network_calls_beyond_loopback(survey):
    _, _, log = survey
    assert not log.exists(), log.read_text()


def test_rerun_into_the_same_folder_needs_resume(survey, tiny, clip):
    out, _, _ = survey
    r = run_cli("run", "damage-survey", "--source", clip, "--out", out, "--config", tiny["flow"])
    assert r.returncode == 2 and "--resume" in r.stderr


def test_kill_9_then_resume_equals_uninterrupted_run(survey, tiny, clip, tmp_path):
    ref, _, _ = survey
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline", "run", "damage-survey", "--source", str(clip), "--out", str(out), "--config", str(tiny["flow"])]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (out / "chunks" / "chunk_00001.json").exists():
        assert p.poll() is None and time.time() < deadline, "run ended before it could be interrupted"
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not (out / "summary.json").exists(), "run finished before the kill: the test proved nothing"
    r = run_cli("run", "damage-survey", "--source", clip, "--out", out, "--config", tiny["flow"], "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "events.jsonl").read_text() == (ref / "events.jsonl").read_text()
    a, b = (json.loads((d / "summary.json").read_text())["rollup"] for d in (out, ref))
    assert a == b
    assert cv2.VideoCapture(str(out / "annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == \
        cv2.VideoCapture(str(ref / "annotated.mp4")).get(cv2.CAP_PROP_FRAME_COUNT)


def test_a_fault_on_the_sink_thread_fails_the_chunk_and_its_retry_loses_nothing(tiny, clip, tmp_path, monkeypatch):
    """Registration, events and video run on a thread beside the models; an I/O fault there must still
    reach the chunk's task (whose retry condition looks for OSError), and the retried chunk must write
    what an unfaulted one does, with no event twice."""
    from tqdm import tqdm

    import flows.damage_survey as ds
    from pipeline.sinks import VideoPart

    def chunk(out, fail_once):
        cfg, src, pipe, _ = ds.prepare(str(clip), str(out), str(tiny["flow"]))
        first, stop = ds._plan(src, cfg.chunk_frames)[0]
        out.mkdir()
        key = f"test:{out}"
        ds._RUNS[key] = {"cfg": cfg, "out": out, "source": src, "pipeline": pipe, "bar": tqdm(disable=True)}
        try:
            if fail_once:
                write = VideoPart.write

                def broken(self, img):
                    monkeypatch.setattr(VideoPart, "write", write)
                    raise OSError("disk full (injected)")

                monkeypatch.setattr(VideoPart, "write", broken)
                with pytest.raises(OSError, match="injected"):
                    ds.process_chunk.fn(key, 0, first, stop)
            ds.process_chunk.fn(key, 0, first, stop)
        finally:
            del ds._RUNS[key]
        marker = json.loads(ds._chunk_path(out, 0).read_text())
        return (out / "events.jsonl").read_text(), marker["observations"], marker["footprints"]

    clean, retried = chunk(tmp_path / "clean", False), chunk(tmp_path / "faulted", True)
    assert clean[0] and len(clean[0].splitlines()) == len(set(clean[0].splitlines()))
    assert retried == clean


def test_bad_inputs_exit_nonzero_with_one_clear_error(tiny, clip, tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    broken = tmp_path / "broken.yaml"
    broken.write_text("stages: [\n")
    no_weights = tmp_path / "no_weights.yaml"
    no_weights.write_text("stages: [{type: damage_segmentation, model: nope.pt}]\n")
    frames = tmp_path / "frames"
    frames.mkdir()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.jpg").write_bytes(b"not a jpeg")
    cases = [
        (["--source", frames, "--config", tiny["flow"]], "no images"),
        (["--source", unreadable, "--config", tiny["flow"]], "none of the 1 inputs"),
        (["--source", clip, "--config", no_weights], "nope.pt"),
        (["--source", tmp_path / "missing.mp4"], "does not exist"),
        (["--source", tmp_path / "empty.mp4"], "empty"),
        (["--source", tmp_path / "empty.mp4", "--config", broken], "not valid YAML"),
    ]
    for i, (args, msg) in enumerate(cases):
        r = run_cli("run", "damage-survey", "--out", tmp_path / f"o{i}", *(args if "--config" in args else [*args, "--config", tiny["flow"]]))
        assert r.returncode == 2 and msg in r.stderr and "fix:" in r.stderr, r.stderr[-2000:]
        assert "Traceback" not in r.stderr


def test_predict_writes_masks_named_after_images(tiny, clip, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    src = sorted((tiny["data"] / "images" / "test").glob("*.jpg"))[:2]
    for p in src:
        (imgs / p.name).write_bytes(p.read_bytes())
    rgba = np.dstack([cv2.imread(str(src[0]))[:, :, ::-1], np.full(cv2.imread(str(src[0])).shape[:2], 255, np.uint8)])
    cv2.imwrite(str(imgs / "alpha.png"), rgba)
    # the same stem as a JPEG beside it, and an image fewer pixels across than the model pads to
    cv2.imwrite(str(imgs / f"{src[1].stem}.png"), cv2.imread(str(src[0])))
    cv2.imwrite(str(imgs / "sliver.png"), cv2.imread(str(src[0]))[:9, :13])
    (imgs / "broken.jpg").write_bytes(b"nope")
    stage = tmp_path / "dmg.yaml"
    stage.write_text(f"type: damage_segmentation\nmodel: {tiny['weights'] / 'damage_synth.pt'}\n")
    r = run_cli("predict", stage, "--source", imgs, "--out", tmp_path / "pred", "--annotate")
    assert r.returncode == 0, r.stderr[-2000:]
    page = (tmp_path / "pred" / "annotated" / "index.html").read_text()
    lines = [json.loads(x) for x in (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()]
    named = {Path(x["image"]).name: x for x in lines}
    shared = src[1].stem  # its two images keep their extensions, so neither overwrites the other
    expect = {src[0].name: src[0].stem, src[1].name: f"{src[1].name}", f"{shared}.png": f"{shared}.png",
              "alpha.png": "alpha", "sliver.png": "sliver"}
    assert set(named) == set(expect), named
    for name, stem in expect.items():
        m = cv2.imread(str(tmp_path / "pred" / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert m.shape == cv2.imread(str(imgs / name)).shape[:2] and m.max() <= 3
        assert named[name]["mask"] == f"{stem}.png" and named[name]["drawn"] == f"annotated/{stem}.jpg"
        assert cv2.imread(str(tmp_path / "pred" / "annotated" / f"{stem}.jpg")).shape == (*m.shape, 3)
        assert f"<b>{name}</b>" in page and f'src="{stem}.jpg"' in page
    masks = {p.name for p in (tmp_path / "pred").glob("*.png")}
    assert masks == {f"{s}.png" for s in expect.values()}
    same = [cv2.imread(str(tmp_path / "pred" / f"{s}.png"), cv2.IMREAD_UNCHANGED) for s in (src[0].stem, f"{shared}.png")]
    assert (same[0] == same[1]).all()  # the PNG copy of src[0] got src[0]'s mask, not src[1]'s
    assert "broken.jpg" in r.stderr
    # a video: each frame its own mask, numbered, and its frame index in its line
    r = run_cli("predict", stage, "--source", clip, "--out", tmp_path / "pred_video")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / "pred_video" / "predictions.jsonl").read_text().splitlines()]
    n = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    assert [x["frame"] for x in lines] == list(range(n)) and n > 1
    assert sorted(p.name for p in (tmp_path / "pred_video").glob("*.png")) == [f"{clip.stem}_{i:06d}.png" for i in range(n)]
    only_broken = tmp_path / "only_broken"
    only_broken.mkdir()
    (only_broken / "broken.jpg").write_bytes(b"nope")
    r = run_cli("predict", stage, "--source", only_broken, "--out", tmp_path / "pred_none")
    assert r.returncode == 2 and "none of the 1 inputs" in r.stderr and "broken.jpg" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "pred_none" / "predictions.jsonl").exists()


def test_outputs_of_same_named_images_from_a_glob_over_folders_keep_their_folder(tmp_path):
    from pipeline.predictions import output_stems

    files = [tmp_path / "x" / "a.jpg", tmp_path / "y" / "a.jpg", tmp_path / "y" / "b.jpg"]
    assert output_stems(files) == {str(files[0]): "x__a.jpg", str(files[1]): "y__a.jpg", str(files[2]): "b"}


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "real" / "footage" / "facade_thermal_flight").exists(),
                    reason="real footage not present")
def test_flow_on_a_real_thermal_facade_flight(tiny, tmp_path):
    """Real frames (a thermal drone pass, stored as 3-channel greyscale JPEGs) go through the
    whole flow: the framework copes with real input; the tiny models' answers are not judged."""
    import yaml

    cfg = yaml.safe_load(tiny["flow"].read_text()) | {"source": {"max_frames": 6}}
    (tmp_path / "flow.yaml").write_text(yaml.safe_dump(cfg))
    src = ROOT.parent / "shared" / "data" / "real" / "footage" / "facade_thermal_flight"
    r = run_cli("run", "damage-survey", "--source", src, "--out", tmp_path / "out", "--config", tmp_path / "flow.yaml")
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["frames_processed"] == 6 and s["skipped"] == []
    # these frames overlap little (about half a frame apart): whatever registration managed is reported
    assert 1 <= s["registration"]["segments"] <= 6 and isinstance(s["rollup"]["unlinked_damage"], list)
