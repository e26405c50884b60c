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

FLOWS = ("damage-survey",)


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
        resume: bool = typer.Option(False, help="continue an interrupted run in --out")):
    """Run a flow and write events.jsonl, annotated.mp4, summary.json and report.html."""
    try:
        if flow_name != "damage-survey":
            raise InspectflowError(f"unknown flow {flow_name!r}", f"use one of: {', '.join(FLOWS)}")
        from flows.damage_survey import damage_survey, prepare

        prepare(source, str(out), str(config) if config else None, resume)  # bad input fails here, before Prefect starts
        s = damage_survey(source=source, out=str(out), config=str(config) if config else None, resume=resume)
    except InspectflowError as e:
        _fail(e)
    ru = s["rollup"]
    typer.echo(f"{s['frames_processed']} frames at {s['fps']:.1f} frames/s; {ru['unique_components']} components, "
               f"{sum(1 for c in ru['components'] if (c['state_id'] or 0) > 0)} damaged")
    if s["skipped"]:
        typer.echo(f"skipped {len(s['skipped'])} unreadable inputs (listed in summary.json)")
    typer.echo(f"report: {out / 'report.html'}")


@app.command()
def predict(stage_config: Path = typer.Argument(..., help="a stage YAML, e.g. stages/configs/damage_segmentation.yaml"),
            source: str = typer.Option(..., help="image folder or glob"),
            out: Path = typer.Option(..., help="output folder")):
    """Run one stage on images. Masks: OUT/<image stem>.png, pixel value = class id; plus OUT/predictions.jsonl."""
    import cv2
    from tqdm import tqdm

    from pipeline.core import FrameResult
    from pipeline.sinks import atomic_write
    from pipeline.sources import open_source
    from stages import load_stage

    try:
        stage = load_stage(stage_config)
        if set(stage.inputs) != {"image"}:
            raise InspectflowError(f"stage {stage.type_name!r} needs {sorted(set(stage.inputs) - {'image'})} besides the image",
                                   "run it inside a flow (`inspectflow run`), or predict with a segmentation stage")
        src = open_source(source)
        if src.total is None:
            raise InspectflowError("predict works on image folders or globs, not streams", "pass --source IMAGE_DIR")
        out.mkdir(parents=True, exist_ok=True)
        lines = []
        for frame in tqdm(src, total=len(src.indices()), desc=stage.type_name, unit="img"):
            r = FrameResult(frame=frame)
            stage.process([r])
            mask = getattr(r, stage.outputs[0])
            name = f"{Path(frame.source).stem}.png"
            ok, buf = cv2.imencode(".png", mask)
            atomic_write(out / name, buf.tobytes())
            counts = {stage.meta["classes"][i]: int(v) for i, v in enumerate(cv2.calcHist([mask], [0], None, [len(stage.meta["classes"])], [0, len(stage.meta["classes"])]).ravel()) if v}
            lines.append(json.dumps({"image": frame.source, "mask": name, "pixels": counts}))
        atomic_write(out / "predictions.jsonl", "\n".join(lines) + "\n")
        if src.skipped:
            typer.echo(f"skipped {len(src.skipped)} unreadable images: " + "; ".join(src.skipped), err=True)
        typer.echo(f"{len(lines)} masks written to {out}")
    except InspectflowError as e:
        _fail(e)


@synth_app.command("facade-video")
def synth_facade_video(out: Path = typer.Option(..., help="clip path, e.g. clip.mp4"),
                       seconds: float = typer.Option(10, min=0.1), seed: int = typer.Option(0),
                       fps: float = typer.Option(30, min=1), width: int = typer.Option(1280), height: int = typer.Option(720)):
    """A synthetic drone pass along a damaged facade, with CLIP.srt telemetry and CLIP.labels.npz labels."""
    from pipeline.synth.video import facade_video

    meta = facade_video(out, seconds, seed, fps, (width, height))
    typer.echo(f"wrote {out} ({meta['frames']} frames), {out.with_suffix('.srt')}, {out.with_suffix('.labels.npz')}")


def main() -> None:  # pragma: no cover
    sys.exit(app())
