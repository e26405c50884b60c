"""The `inspectflow` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from pipeline.errors import InspectflowError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Computer-vision inspection pipelines.")
synth_app = typer.Typer(no_args_is_help=True, help="Generate synthetic data.")
app.add_typer(synth_app, name="synth")

FLOWS = ("damage-survey", "site-safety")
alerts_app = typer.Typer(no_args_is_help=True, help="Site-safety alerts.")
app.add_typer(alerts_app, name="alerts")


def _fail(e: InspectflowError) -> None:
    typer.secho(f"error: {e.what}", fg="red", err=True)
    if e.fix:
        typer.secho(f"  fix: {e.fix}", fg="yellow", err=True)
    raise typer.Exit(2)


@app.command()
def run(flow_name: str = typer.Argument(..., metavar="FLOW", help=f"one of: {', '.join(FLOWS)}"),
        source: str = typer.Option(..., help="video file, image folder or glob, stream URL, or camera index"),
        out: Path = typer.Option(..., help="output folder"),
        config: Optional[Path] = typer.Option(None, help="flow config YAML (default: the shipped one)"),
        resume: bool = typer.Option(False, help="continue an interrupted run in --out"),
        device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N or mps: every model runs there "
                                             "(default: the flow config's `device:`, else each stage's)")):
    """Run a flow. damage-survey writes events.jsonl, annotated.mp4, summary.json and report.html;
    site-safety writes events.jsonl, alerts.jsonl, snapshots/, annotated.mp4 and summary.json."""
    from pipeline.sources import check_some_read

    try:
        if flow_name not in FLOWS:
            raise InspectflowError(f"unknown flow {flow_name!r}", f"use one of: {', '.join(FLOWS)}")
        if flow_name == "site-safety":
            if resume:
                raise InspectflowError("site-safety runs cannot be resumed (tracking starts afresh)",
                                       "run again with a new --out")
            from flows.site_safety import prepare as prepare_safety
            from flows.site_safety import site_safety

            prepare_safety(source, str(out), str(config) if config else None, device)
            s = site_safety(source=source, out=str(out), config=str(config) if config else None, device=device)
            check_some_read(source, s["frames_processed"], s["skipped"])
            typer.echo(f"{s['frames_processed']} frames at {s['fps']:.1f} frames/s; {s['workers_seen']} workers, "
                       f"{len(s['violations'])} violations; alerts: {out / 'alerts.jsonl'}; report: {out / 'report.html'}")
            if s["alerts"]["pending"]:
                typer.echo(f"{s['alerts']['pending']} alerts wait in {out / 'outbox'} for the webhook; "
                           f"`inspectflow alerts retry --out {out}` sends them")
            return
        from flows.damage_survey import damage_survey, prepare

        prepare(source, str(out), str(config) if config else None, resume, device)  # bad input fails here, before Prefect starts
        s = damage_survey(source=source, out=str(out), config=str(config) if config else None, resume=resume, device=device)
        check_some_read(source, s["frames_processed"], s["skipped"])  # after the flow: its empty summary stays
    except InspectflowError as e:
        _fail(e)
    ru = s["rollup"]
    typer.echo(f"{s['frames_processed']} frames at {s['fps']:.1f} frames/s; {ru['unique_components']} components, "
               f"{sum(1 for c in ru['components'] if (c['state_id'] or 0) > 0)} damaged")
    if s["skipped"]:
        typer.echo(f"skipped {len(s['skipped'])} unreadable inputs (listed in summary.json)")
    if s.get("registration", {}).get("segments", 1) > 1:
        typer.echo(f"frames registered in {s['registration']['segments']} separate stretches (too little overlap, or "
                   f"cuts): views link only within one, so component counts are upper bounds")
    if ru.get("unlinked_damage"):
        typer.echo(f"{len(ru['unlinked_damage'])} more damaged components were seen in one frame only (listed apart in the report)")
    typer.echo(f"report: {out / 'report.html'}")


@app.command()
def predict(stage_configs: list[Path] = typer.Argument(..., metavar="STAGE_CONFIG...",
                                                       help="stage YAMLs in order, e.g. stages/configs/damage_closeup.yaml, "
                                                       "or stages/configs/safety_photos.yaml stages/configs/hardhat_rule_photos.yaml"),
            source: str = typer.Option(..., help="image folder or glob"),
            out: Path = typer.Option(..., help="output folder"),
            device: Optional[str] = typer.Option(None, help="cpu, cuda, cuda:N or mps: every model runs there "
                                                 "(default: each stage's `device:`)"),
            annotate: bool = typer.Option(False, help="also draw each image's results, for review by eye: "
                                          "OUT/annotated/<image stem>.jpg")):
    """Run stages on unrelated images (or a video's frames). Masks: OUT/<image stem>.png, pixel value = class id
    (images sharing a stem keep their extension: a.jpg.png; a video's frames: <video stem>_<frame>.png); boxes,
    head points, hard-hat decisions and components: OUT/predictions.jsonl, one line per image."""
    import cv2
    from tqdm import tqdm

    from pipeline.annotate import annotate as annotate_frame
    from pipeline.predictions import MASKS, check_outputs, decision_counts, output_stems, record, review_page
    from pipeline.safety.draw import annotate_safety
    from pipeline.runner import Pipeline
    from pipeline.sinks import atomic_write
    from pipeline.sources import ImageSource, check_some_read, open_source

    try:
        pipe = Pipeline.from_specs(list(stage_configs), device=device)
        outputs = [o for st in pipe.stages for o in st.outputs]
        check_outputs(outputs)
        classes = {o: st.meta["classes"] for st in pipe.stages for o in st.outputs if o in MASKS}
        for st in pipe.stages:
            if getattr(st, "track", False):
                st.track = False  # unrelated photos: a tracker would also drop boxes below its new-track threshold
        src = open_source(source)
        if src.total is None:
            raise InspectflowError("predict works on image folders or globs, not streams", "pass --source IMAGE_DIR")
        out.mkdir(parents=True, exist_ok=True)
        masks = [o for o in outputs if o in MASKS]
        draw = (annotate_safety if {"detections", "decisions"} & set(outputs) else annotate_frame) if annotate else None
        # a video's frames share its name: each takes its frame number
        stems = output_stems(src.files) if isinstance(src, ImageSource) else None
        records = []
        for frame in tqdm(src, total=len(src.indices()), desc="predict", unit="img"):
            (r,) = pipe([frame])
            stem = stems[frame.source] if stems is not None else f"{Path(frame.source).stem}_{frame.index:06d}"
            for o in masks:
                name = f"{stem}.png" if len(masks) == 1 else f"{o}/{stem}.png"
                (out / name).parent.mkdir(exist_ok=True)
                ok, buf = cv2.imencode(".png", getattr(r, o))
                atomic_write(out / name, buf.tobytes())
            if draw is not None:
                ok, buf = cv2.imencode(".jpg", draw(r, label=Path(frame.source).name))
                (out / "annotated").mkdir(exist_ok=True)
                atomic_write(out / "annotated" / f"{stem}.jpg", buf.tobytes())
            line = record(r, outputs, classes)
            if stems is None:
                line["frame"] = frame.index
            if len(masks) == 1:
                line["mask"] = f"{stem}.png"
            elif masks:
                line["masks"] = {o: f"{o}/{stem}.png" for o in masks}
            if draw is not None:
                line["drawn"] = f"annotated/{stem}.jpg"
            records.append(line)
        check_some_read(source, len(records), src.skipped)
        atomic_write(out / "predictions.jsonl", "".join(json.dumps(x) + "\n" for x in records))
        if annotate:
            atomic_write(out / "annotated" / "index.html", review_page(records))
        if src.skipped:
            typer.echo(f"skipped {len(src.skipped)} unreadable images: " + "; ".join(src.skipped), err=True)
        typer.echo(f"{len(records)} {'images' if stems is not None else 'frames'} predicted; {', '.join(outputs)} in {out / 'predictions.jsonl'}"
                   + (f"; PNG masks per image: {', '.join(masks)}" if masks else "")
                   + (f"; drawn in {out / 'annotated'} (open index.html)" if annotate else ""))
        if "decisions" in outputs:
            statuses = decision_counts(records)
            no_hat_images = sum(decision_counts([x])["no_hat"] > 0 for x in records)
            typer.echo(f"hard-hat decisions: {statuses['worn']} worn, {statuses['no_hat']} no_hat, "
                       f"{statuses['unknown']} unknown; no_hat on {no_hat_images} of {len(records)} images")
        c = pipe.counters()
        if "safety_detector.passes" in c:
            typer.echo(f"test-time passes: {int(c['safety_detector.passes'])} per image; "
                       f"{int(c['safety_detector.found_by_extra_passes'])} people and heads only the extra passes found")
        if "hardhat_rule.padded" in c:
            typer.echo(f"mirror-padded borders on {int(c['hardhat_rule.padded'])} of {len(records)} images: "
                       f"{int(c['hardhat_rule.reflected'])} decisions reflected into them")
        if "hardhat_rule.vetoed" in c:
            typer.echo(f"hat check: {int(c['hardhat_rule.vetoed'])} worn calls became no_hat")
        if "hardhat_rule.taken_back" in c:
            typer.echo(f"head check: {int(c['hardhat_rule.taken_back'])} no_hat calls on heads that look hatted reported as unknown")
        if "hardhat_rule.too_faint" in c:
            typer.echo(f"too faint to call: {int(c['hardhat_rule.too_faint'])} no_hat calls reported as unknown")
    except InspectflowError as e:
        _fail(e)


@synth_app.command("facade-video")
def synth_facade_video(out: Path = typer.Option(..., help="clip path, e.g. clip.mp4"),
                       seconds: float = typer.Option(10, min=0.1), seed: int = typer.Option(0),
                       fps: float = typer.Option(30, min=1), width: int = typer.Option(1280), height: int = typer.Option(720),
                       intact: float = typer.Option(0.0, min=0, max=1, help="share of the pass over undamaged stretches")):
    """A synthetic drone pass along a damaged facade, with CLIP.srt telemetry and CLIP.labels.npz labels."""
    from pipeline.synth.video import facade_video

    meta = facade_video(out, seconds, seed, fps, (width, height), intact=intact)
    typer.echo(f"wrote {out} ({meta['frames']} frames), {out.with_suffix('.srt')}, {out.with_suffix('.labels.npz')}")


@app.command()
def schedule(flow_name: str = typer.Argument(..., metavar="FLOW", help="site-safety"),
             cron: str = typer.Option(..., help='cron expression, e.g. "0 7-17 * * 1-5"'),
             source: str = typer.Option(..., help="video file, image folder, stream URL or camera index"),
             out: Path = typer.Option(..., help="root folder; each run writes OUT/<UTC time>/"),
             config: Optional[Path] = typer.Option(None, help="flow config YAML (default: the shipped one)"),
             name: str = typer.Option("scheduled", help="deployment name"),
             timezone: str = typer.Option("UTC", help="time zone of the cron expression")):
    """Serve a flow on a cron schedule against the Prefect server at PREFECT_API_URL (runs until stopped)."""
    from pipeline.schedule import serve_scheduled

    try:
        serve_scheduled(flow_name, cron, source, out, config, name, timezone)
    except InspectflowError as e:
        _fail(e)


@alerts_app.command("retry")
def alerts_retry(out: Path = typer.Option(..., help="a site-safety run folder"),
                 webhook: Optional[str] = typer.Option(None, help="URL (default: the one the run used)")):
    """Send alerts that wait in OUT/outbox because the webhook was down."""
    from pipeline.safety.alerts import AlertConfig, Outbox

    try:
        run = out / "run.json"
        if not run.exists():
            raise InspectflowError(f"{out} is not a site-safety run folder (no run.json)", "pass the run's --out folder")
        url = webhook or json.loads(run.read_text())["flow"]["alerts"]["webhook"]
        if not url:
            raise InspectflowError("the run had no webhook configured", "pass --webhook URL")
        box = Outbox(out / "outbox", AlertConfig(webhook=url))
        left = box.deliver(force=True)
    except InspectflowError as e:
        _fail(e)
    typer.echo(f"delivered {box.delivered}, {left} still waiting")
    if left:
        raise typer.Exit(1)


@synth_app.command("site-video")
def synth_site_video(out: Path = typer.Option(..., help="clip path, e.g. site.mp4"),
                     seconds: float = typer.Option(10, min=0.1), seed: int = typer.Option(0),
                     fps: float = typer.Option(10, min=1), width: int = typer.Option(1280), height: int = typer.Option(720),
                     empty: float = typer.Option(0.0, min=0, max=1, help="share of each 10 s with nobody on site")):
    """A fixed site camera: workers walk and take hats off and on; labels in CLIP.labels.jsonl."""
    from pipeline.synth.site_data import site_video

    meta = site_video(out, seconds, seed, fps, (width, height), empty=empty)
    typer.echo(f"wrote {out} ({meta['frames']} frames, {meta['workers']} workers), {out.with_suffix('.labels.jsonl')}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
