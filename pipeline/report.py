"""report.html: one self-contained page (images inlined) a survey engineer can mail on."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.budget import describe  # noqa: E402
from pipeline.annotate import STATE_COLORS  # noqa: E402
from pipeline.components import crop_rect  # noqa: E402
from pipeline.core import DAMAGE_STATES  # noqa: E402

_STATE_HEX = ["#%02x%02x%02x" % tuple(reversed(c)) for c in STATE_COLORS]


def _png(fig) -> str:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str, mime="image/png", width=None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img src="data:{mime};base64,{b64}"{w}>'


def state_chart(per_type: dict) -> str:
    names = [n for n, e in per_type.items() if "states" in e]
    fig, ax = plt.subplots(figsize=(7, 3))
    left = np.zeros(len(names))
    for s, color in zip(DAMAGE_STATES, _STATE_HEX):
        vals = np.array([per_type[n]["states"][s] for n in names])
        ax.barh(names, vals, left=left, color=color, label=s)
        left += vals
    ax.set_xlabel("components")
    ax.legend(ncol=4, fontsize=8, loc="lower right")
    ax.set_title("Condition by component type")
    return _png(fig)


def damage_timeline(events_path: Path) -> str:
    frames, series = [], {"crack": [], "spall": [], "rebar": []}
    with open(events_path) as fh:
        for line in fh:
            e = json.loads(line)
            frames.append(e["frame"])
            for k in series:
                series[k].append(e["damage_px"].get(k, 0))
    fig, ax = plt.subplots(figsize=(7, 2.6))
    for (k, v), c in zip(series.items(), ["red", "orange", "magenta"]):
        ax.plot(frames, v, label=k, color=c, lw=1)
    ax.set_xlabel("frame")
    ax.set_ylabel("damage pixels")
    ax.legend(fontsize=8)
    ax.set_title("Damage along the flight")
    return _png(fig)


def facade_map(components: list[dict]) -> str:
    """Every linked component drawn where it sits in the mosaic plane, coloured by condition."""
    fig, ax = plt.subplots(figsize=(9, 3))
    for c in components:
        p = np.array(c["mosaic_poly"] + [c["mosaic_poly"][0]])
        color = _STATE_HEX[c["state_id"]] if c["state_id"] is not None else "#9999aa"
        ax.fill(p[:, 0], p[:, 1], color=color, alpha=0.35, lw=0.5, ec="k")
    ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_title("Facade map (first segment's coordinates)")
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def thumbnail(image: np.ndarray, rect, size=160) -> str:
    """A component's rotated rectangle, or the whole frame (rect None), as a base64 JPEG."""
    if rect is None:
        s = size / max(image.shape[:2])
        crop = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    else:
        (cx, cy), (w, h), a = rect
        crop = crop_rect(image, ((cx, cy), (w * 1.15 + 8, h * 1.15 + 8), a), size)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return base64.b64encode(buf.tobytes()).decode()


def _card(w: dict, read_frame) -> str:
    e = html.escape
    img = read_frame(w["best_frame"])
    thumb = _img(thumbnail(img, w["best_rect"]), "image/jpeg") if img is not None else "(frame not re-readable)"
    gps = w["gps"]
    where = f"{gps['lat']:.6f}, {gps['lon']:.6f}, {gps['alt_m']:.1f} m" if gps and gps.get("lat") is not None else "no GPS"
    color = _STATE_HEX[w["state_id"]]
    return (f'<div class="card" style="border-color:{color}">{thumb}<br><b>{e(w["class"])}</b> '
            f'<span style="color:{color}">{e(w["state"])}</span><br>damage {w["damage_ratio"]:.1%} of area'
            f'<br>frame {w["best_frame"]} ({w["views"]} views)<br>{e(where)}</div>')


def render_html(summary: dict, events_path: Path, read_frame) -> str:
    """`read_frame(index) -> image | None` re-reads a frame for the worst-findings thumbnails."""
    e = html.escape
    ru = summary["rollup"]
    rows = "".join(
        f"<tr><td>{e(n)}</td><td>{d['count']}</td>"
        + ("".join(f"<td>{d['states'][s]}</td>" for s in DAMAGE_STATES) + f"<td>{d['damaged_share']:.0%}</td><td>{d['mean_damage_ratio']:.2%}</td>"
           if "states" in d else "<td colspan=6>not assessed</td>")
        + "</tr>" for n, d in ru["per_type"].items())
    cards = [_card(w, read_frame) for w in ru["worst"]]
    unlinked = ru.get("unlinked_damage", [])
    unlinked_html = (f"<p>{len(unlinked)} damaged components were seen in one frame only, so no second view confirms "
                     f"them and the table below leaves them out; most come from breaks in registration"
                     f"{' (the 12 worst below)' if len(unlinked) > 12 else ''}:</p>"
                     + "".join(_card(w, read_frame) for w in unlinked[:12]) if unlinked else "")
    screened = []
    for f in summary.get("screened", [])[:24]:
        img = read_frame(f["frame"])
        thumb = _img(thumbnail(img, None), "image/jpeg") if img is not None else "(frame not re-readable)"
        scores = ", ".join(f"{e(k)} {v:.3f}" for k, v in f["scores"].items())
        screened.append(f'<div class="card" style="border-color:#d00">{thumb}<br>frame {f["frame"]}: <b>{e(f["action"])}</b><br>{scores}</div>')
    n_screened = len(summary.get("screened", []))
    screen_html = (f"<p>{n_screened} frames looked unlike the training data to a screen (score = share of clean inputs "
                   f"it exceeds){'; the first 24' if n_screened > 24 else ''}:</p>{''.join(screened)}" if n_screened else
                   "<p>No frame was flagged.</p>")
    reg = summary.get("registration", {})
    breaks = (f'<p style="color:#b60">Frames could not all be registered to each other, so the flight is '
              f'{reg["segments"]} separate stretches (too little overlap between frames, or cuts). Views are linked '
              f'only within a stretch: a component seen in two stretches counts twice, so the counts below are upper '
              f'bounds, and one seen in one frame only is left out of them (if damaged, it is shown under the worst '
              f'components).</p>' if reg.get("segments", 1) > 1 else "")
    n_tr = ru.get("dropped_transient", 0)
    transient = (f" &middot; {n_tr} more left out as transient: each was seen in too few of the frames that showed "
                 f"its place (<code>linking.min_presence</code>)" if n_tr else "")
    run = summary["run"]
    skipped = "".join(f"<li>{e(s)}</li>" for s in summary["skipped"]) or "<li>none</li>"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Damage survey: {e(run['source'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:first-child{{text-align:left}}
.card{{display:inline-block;border:3px solid;margin:4px;padding:4px;width:170px;font-size:12px;vertical-align:top}}</style></head><body>
<h1>Damage survey</h1>
<p>Source <code>{e(run['source'])}</code> &middot; {summary['frames_processed']} frames processed at {summary['fps']:.1f} frames/s
&middot; {ru['unique_components']} components from {ru['views']} views{transient}
</p>{breaks}
<p>Compute: {describe(summary['compute']) if 'compute' in summary else 'not recorded'}</p>
<h2>Worst components</h2>{''.join(cards) or '<p>No damaged components found.</p>'}{unlinked_html}
<h2>Components</h2><table><tr><th>type</th><th>count</th>{''.join(f'<th>{s}</th>' for s in DAMAGE_STATES)}<th>damaged</th><th>mean damage</th></tr>{rows}</table>
<h2>Plots</h2>{_img(state_chart(ru['per_type']))}<br>{_img(damage_timeline(events_path))}<br>{_img(facade_map(ru['components']))}
<h2>Screened frames (adversarial or out-of-distribution input)</h2>{screen_html}
<h2>Skipped input</h2><ul>{skipped}</ul>
<p style="color:#888">inspectflow {e(summary['version'])} &middot; config <code>{e(run['config'])}</code></p></body></html>"""
