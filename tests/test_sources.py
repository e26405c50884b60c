import cv2
import numpy as np
import pytest

from pipeline.core import Telemetry
from pipeline.errors import SourceError
from pipeline.imageio import read_image
from pipeline.sources import ImageSource, SourceOptions, VideoSource, open_source
from pipeline.telemetry import parse_srt, write_srt


def _video(path, n=10, size=(64, 48), fps=10):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n):
        w.write(np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    w.release()
    return path


def test_video_stride_start_max_frames(tmp_path):
    src = open_source(_video(tmp_path / "v.mp4"), SourceOptions(stride=3, start=1, max_frames=3))
    assert isinstance(src, VideoSource)
    assert [f.index for f in src] == [1, 4, 7]
    assert src.read_at(4).image.shape == (48, 64, 3)


def test_srt_sidecar_is_attached(tmp_path):
    v = _video(tmp_path / "flight.mp4", n=4)
    write_srt(tmp_path / "flight.srt", [Telemetry(i / 10, 47.0 + i * 1e-5, 8.5, 20.0 + i) for i in range(4)], fps=10)
    frames = list(open_source(v))
    assert frames[2].telemetry.lat == pytest.approx(47.00002)
    assert frames[3].telemetry.alt_m == pytest.approx(23.0)


def test_parse_old_dji_gps_format(tmp_path):
    p = tmp_path / "old.srt"
    p.write_text("1\n00:00:00,000 --> 00:00:01,000\nHOME(8.5,47.0) GPS(8.51,47.02,31) BAROMETER:30.2\n\n")
    (t,) = parse_srt(p)
    assert (t.lon, t.lat, t.alt_m) == (8.51, 47.02, 31.0)


@pytest.mark.parametrize("content,name", [(b"", "empty.mp4"), (b"this is not a video at all" * 50, "notes.mp4")])
def test_bad_video_files_give_one_clear_error(tmp_path, content, name):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(SourceError) as e:
        open_source(p)
    assert name in str(e.value) and "fix:" in str(e.value)


def test_truncated_video(tmp_path):
    v = _video(tmp_path / "v.mp4", n=30, size=(320, 240))
    data = v.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 3])
    with pytest.raises(SourceError, match="cut.mp4"):
        open_source(tmp_path / "cut.mp4")


def test_missing_source_and_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path / "empty")


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    (d / "1b.jpg").write_bytes(b"\xff\xd8garbage")
    src = open_source(d)
    assert isinstance(src, ImageSource)
    assert len(list(src)) == 3
    assert len(src.skipped) == 1 and "1b.jpg" in src.skipped[0]


def test_rgba_16bit_and_grey_images_become_bgr8(tmp_path):
    cv2.imwrite(str(tmp_path / "rgba.png"), np.full((5, 6, 4), 200, np.uint8))
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((5, 6, 3), 65535, np.uint16))
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((5, 6), 7, np.uint8))
    for name, value in (("rgba", 200), ("deep", 255), ("grey", 7)):
        img = read_image(tmp_path / f"{name}.png")
        assert img.shape == (5, 6, 3) and img.dtype == np.uint8 and int(img[0, 0, 0]) == value


def test_glob_source(tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
    assert len(list(open_source(str(tmp_path / "f[12].jpg")))) == 2


def test_bad_options():
    with pytest.raises(SourceError, match="stride"):
        SourceOptions(stride=0)


class _MJPEG:
    """A real MJPEG-over-HTTP camera on loopback that drops every connection after `per_conn` frames."""

    def __init__(self, per_conn: int = 10):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import cv2
        import numpy as np

        me = self
        self.connections = 0

        class H(BaseHTTPRequestHandler):
            def do_GET(self):
                me.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(per_conn):
                    buf = cv2.imencode(".jpg", np.full((96, 128, 3), 20 * i, np.uint8))[1].tobytes()
                    self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(buf)
                                     + buf + b"\r\n")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/cam.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_dropped_stream_reconnects_and_records_the_gap():
    cam = _MJPEG(per_conn=10)
    try:
        src = open_source(cam.url, SourceOptions(max_frames=25, reconnect_tries=3, reconnect_wait_s=0.05))
        frames = list(src)
    finally:
        cam.close()
    assert len(frames) == 25 and cam.connections >= 3
    assert len(src.gaps) >= 2 and all(g["recovered"] for g in src.gaps)
    assert all(b.time_s >= a.time_s for a, b in zip(frames, frames[1:]))


def test_stream_that_stays_down_ends_with_an_unrecovered_gap():
    cam = _MJPEG(per_conn=5)
    src = open_source(cam.url, SourceOptions(reconnect_tries=2, reconnect_wait_s=0.05))
    cam.close()  # the camera goes away for good
    frames = list(src)
    assert 0 < len(frames) <= 5
    assert src.gaps[-1]["recovered"] is False and src.gaps[-1]["attempts"] == 2
