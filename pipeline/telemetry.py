"""DJI-style .srt telemetry: one subtitle block per frame with GPS, altitude and time."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.core import Telemetry

_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)\s*-->")
_FIELDS = {
    "lat": re.compile(r"\[latitude\s*:\s*(-?[\d.]+)\]"),
    "lon": re.compile(r"\[longitude\s*:\s*(-?[\d.]+)\]"),
    "alt_m": re.compile(r"\[(?:rel_alt|altitude)\s*:\s*(-?[\d.]+)"),
}
# Older DJI firmware writes "GPS(lon,lat,alt)" instead of bracketed fields.
_GPS = re.compile(r"GPS\s*\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)")


def parse_srt(path: str | Path) -> list[Telemetry]:
    blocks = re.split(r"\n\s*\n", Path(path).read_text(encoding="utf-8", errors="replace").strip())
    out = []
    for block in blocks:
        t = _TIME.search(block)
        if not t:
            continue
        h, m, s, ms = (int(g) for g in t.groups())
        tel = Telemetry(time_s=h * 3600 + m * 60 + s + ms / 1000)
        for name, rx in _FIELDS.items():
            if (mm := rx.search(block)):
                setattr(tel, name, float(mm.group(1)))
        if tel.lat is None and (g := _GPS.search(block)):
            tel.lon, tel.lat, tel.alt_m = (float(v) for v in g.groups())
        out.append(tel)
    return out


def _stamp(t: float) -> str:
    ms = round(t * 1000)
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_srt(path: str | Path, records: list[Telemetry], fps: float) -> None:
    lines = []
    for i, r in enumerate(records):
        lines += [
            str(i + 1),
            f"{_stamp(i / fps)} --> {_stamp((i + 1) / fps)}",
            f"<font size=\"28\">FrameCnt: {i + 1}, DiffTime: {1000 / fps:.0f}ms",
            f"[latitude: {r.lat:.7f}] [longitude: {r.lon:.7f}] [rel_alt: {r.alt_m:.3f} abs_alt: {r.alt_m:.3f}] </font>",
            "",
        ]
    Path(path).write_text("\n".join(lines), encoding="utf-8")


def sidecar_srt(video: Path) -> Path | None:
    for cand in (video.with_suffix(".srt"), video.with_suffix(".SRT")):
        if cand.exists():
            return cand
    return None
