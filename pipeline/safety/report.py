"""report.html for a site-safety run: the violations with their snapshots, and hat status over time."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from pipeline.budget import describe
from pipeline.report import _img, _png, plt


def status_timeline(events_path: Path) -> str:
    t, worn, no_hat, unknown = [], [], [], []
    with open(events_path) as fh:
        for line in fh:
            e = json.loads(line)
            checked = [w["status"] for w in e["workers"] if w["checked"]]
            t.append(e["time_s"])
            worn.append(checked.count("worn"))
            no_hat.append(checked.count("no_hat"))
            unknown.append(checked.count("unknown"))
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.stackplot(t, worn, no_hat, unknown, labels=["hat", "no hat", "unknown"], colors=["#2ca02c", "#d62728", "#aaaaaa"])
    ax.set(xlabel="time (s)", ylabel="workers checked", title="Hard-hat status per frame")
    ax.legend(fontsize=8, loc="upper right")
    return _png(fig)


def render_safety_html(summary: dict, out_dir: Path) -> str:
    e = html.escape
    alerts = [json.loads(x) for x in (out_dir / "alerts.jsonl").read_text().splitlines() if x.strip()]
    cards = []
    for a in alerts:
        if a["type"] != "violation_start":
            continue
        snap = out_dir / a.get("snapshot", "")
        img = _img(base64.b64encode(snap.read_bytes()).decode(), "image/jpeg", 320) if a.get("snapshot") and snap.exists() else ""
        why = e((a.get("worker") or {}).get("why", {}).get("rule", ""))
        cards.append(f'<div class="card">{img}<br><b>worker #{a["track_id"]}</b> at {a["time_s"]:.1f} s '
                     f'(frame {a["frame"]}), {a["without_hat_s"]:.1f} s without a hat<br><small>{why}</small></div>')
    gaps = "".join(f"<li>lost at {g['lost_at_s']:.1f} s for {g['seconds']:.1f} s, "
                   f"{'recovered' if g['recovered'] else 'not recovered'} after {g['attempts']} attempts</li>"
                   for g in summary.get("stream_gaps", []))
    screened = []
    for f in summary.get("screened", []):
        thumb = out_dir / f.get("thumbnail", "")
        if not f.get("thumbnail") or not thumb.exists():
            continue
        img = _img(base64.b64encode(thumb.read_bytes()).decode(), "image/jpeg", 320)
        scores = ", ".join(f"{e(k)} {v:.3f}" for k, v in f["scores"].items())
        screened.append(f'<div class="card" style="border-color:#888">{img}<br>frame {f["frame"]} at {f["time_s"]:.1f} s: '
                        f'<b>{e(f["action"])}</b><br>{scores}</div>')
    n_screened = len(summary.get("screened", []))
    screen_html = (f"<h2>Screened frames (adversarial or out-of-distribution input)</h2><p>{n_screened} frames looked "
                   f"unlike the detector's training data (score = share of clean inputs it exceeds)"
                   f"{'; the first ' + str(len(screened)) + ' are shown' if n_screened > len(screened) else ''}.</p>"
                   f"{''.join(screened)}" if n_screened else "")
    d = summary["alerts"]
    webhook = "" if not d["webhook"] else (f"<p>Webhook {e(d['webhook'])}: {d['delivered']} delivered, "
                                           f"<b>{d['pending']} waiting in outbox/</b></p>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Site safety report</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1100px}}
.card{{display:inline-block;border:3px solid #d62728;margin:4px;padding:4px;width:330px;font-size:12px;vertical-align:top}}</style>
</head><body><h1>Site safety</h1>
<p>Source <code>{e(summary['run']['source'])}</code> &middot; {summary['frames_processed']} frames at
{summary['fps']:.1f} frames/s &middot; {summary['workers_seen']} worker tracks &middot;
<b>{len(summary['violations'])} violations</b>
</p>
<p>Compute: {describe(summary['compute']) if 'compute' in summary else 'not recorded'}</p>
{webhook}<h2>Violations</h2>{''.join(cards) or '<p>No violations.</p>'}
<h2>Over time</h2>{_img(status_timeline(out_dir / 'events.jsonl'))}
{screen_html}
{f'<h2>Stream gaps</h2><ul>{gaps}</ul>' if gaps else ''}
</body></html>"""
