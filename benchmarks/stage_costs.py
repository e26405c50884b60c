"""Where a computed frame's time goes in the damage-survey chain, and what this repo's CPU shortcuts buy,
each against its plain version in the same run.

    python benchmarks/stage_costs.py [--frames 40]

- per stage: ms per frame of the shipped chain at budget `full` (every frame computed) on the cached 720p
  drone pass of benchmarks/flow_budget.py (made if missing);
- component extraction: block labelling (a mask enlarged from the segmenter's 1/4 scale is labelled at its
  small size) against labelling it at full size, on the chain's own component masks;
- condition classifier: BatchNorm folded and NHWC against the checkpoint as trained, on the chain's crops;
- the condition screen's autoencoders: NHWC (as loaded) against NCHW (as trained), on those crops' activations;
- damage segmenter: `runtime: onnxruntime` against `runtime: torch` (both folded, NHWC), same frames, same masks;
- both segmenters under ONNX Runtime: the graph exported at the frames' fixed size against the free-size one
  (at `precision: int8`, as the component segmenter ships, the fixed-size graph is the quantized one).
Writes benchmarks/results/stage_costs.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.flow_budget import CACHE, _damage_cfg  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def best_of(fn, reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)  # the least-disturbed repeat: this machine's neighbours add noise, never remove it


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    a = ap.parse_args()

    import numpy as np
    import torch

    import pipeline.components as pc
    from pipeline.models import checkpoint
    from pipeline.models.onnx import FIXED_AFTER
    from pipeline.models.preprocess import to_tensor
    from pipeline.runner import Pipeline, load_flow_config
    from pipeline.sources import SourceOptions, open_source
    from pipeline.synth.video import facade_video
    from stages import load_stage

    clip = CACHE / "pass_720p_10s_intact0.5.mp4"
    if not clip.exists():
        facade_video(clip, seconds=10, seed=11, fps=30, size=(1280, 720), intact=0.5)
    with tempfile.TemporaryDirectory() as d:
        cfg, base = load_flow_config(_damage_cfg("full", Path(d) / "flow.yaml"))
    pipe = Pipeline.from_config(cfg, base)
    spent: dict[str, float] = {}
    for i, st in enumerate(pipe.stages):
        def timed(batch, _run=st.process, _name=f"{i}: {st.type_name}"):
            t = time.perf_counter()
            _run(batch)
            spent[_name] = spent.get(_name, 0.0) + time.perf_counter() - t
        st.process = timed
    frames = list(open_source(clip, SourceOptions(max_frames=a.frames)))
    results = []
    for i in range(0, len(frames), cfg.batch_size):
        results += pipe(frames[i : i + cfg.batch_size])
    per_stage = {k: round(1000 * v / len(frames), 1) for k, v in spent.items()}

    masks = [(r.component_mask, r.damage_mask) for r in results]
    fast = best_of(lambda: [pc.extract_components(m, d) for m, d in masks])
    block = pc._block_factor
    pc._block_factor = lambda m: 1
    plain = best_of(lambda: [pc.extract_components(m, d) for m, d in masks])
    pc._block_factor = block

    cond = next(st for st in pipe.stages if st.type_name == "component_condition")
    size = int(cond.meta.get("meta", {}).get("crop_size", 64))
    crops = [pc.crop_rect(r.frame.image, c.rect, size) for r in results[:8] for c in r.components if c.state is not None]
    x = to_tensor(crops)
    as_trained, _ = checkpoint.load(cond.cfg.model, "condition_classification")
    for m in (as_trained, cond.model):
        if hasattr(m, "cfg"):
            m.cfg.threshold = 1.0  # every crop to the last exit, in both
    with torch.inference_mode():
        t_plain = best_of(lambda: as_trained(x))
        t_fold = best_of(lambda: cond.model(x.contiguous(memory_format=torch.channels_last)))

    # the condition screen's AEs, on the activations the classifier gives these crops
    scr = next(st for st in pipe.stages if st.type_name == "screen" and st.cfg.target == "component_condition")
    acts, mods = {}, dict(cond.model.named_modules())
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: acts.__setitem__(n, o)) for n in scr.screen.layers]
    with torch.inference_mode():
        cond.model(x.contiguous(memory_format=torch.channels_last))
        for h in hooks:
            h.remove()
        aes = scr.screen.aes
        xs = [ae.prepare(acts[n]) for n, ae in zip(scr.screen.layers, aes)]
        t_ae_nhwc = best_of(lambda: [ae.features_of(v) for ae, v in zip(aes, xs)], reps=5)
        for ae in aes:
            ae.to(memory_format=torch.contiguous_format)
        xs_plain = [v.contiguous() for v in xs]
        t_ae_plain = best_of(lambda: [ae.features_of(v) for ae, v in zip(aes, xs_plain)], reps=5)
        for ae in aes:
            ae.to(memory_format=torch.channels_last)
        # its deepest detector on those features, in chunks the size a flow batch gives it
        from pipeline.screen import detector as sdet
        feats = torch.cat([ae.features_of(v) for ae, v in zip(aes, xs)], 1).numpy()
        # a screen that reads the exits (`exits: true`) has more columns per layer; the detectors' arithmetic does not
        # depend on their values, so the exits' columns are left at zero here
        width = scr.screen._width(len(aes))
        feats = np.pad(feats, ((0, 0), (0, width - feats.shape[1])))
        gmm = scr.screen.detectors[len(aes)]
        chunks = np.array_split(feats, max(1, len(feats) // 16))
        t_det_sk = best_of(lambda: [sdet.score(gmm, c) for c in chunks], reps=5)
        t_det_np = best_of(lambda: [sdet.score(scr.screen._scorers[len(aes)], c) for c in chunks], reps=5)

    dmg = next(st for st in pipe.stages if st.type_name == "damage_segmentation")
    spec = {**dmg.cfg.model_dump(exclude_none=True), "model": str(dmg.cfg.model)}
    by_runtime = {rt: load_stage({**spec, "runtime": rt}) for rt in ("torch", "onnxruntime")}
    images = [f.image for f in frames]
    masks_rt = {rt: st.predict(images[:4]) for rt, st in by_runtime.items()}  # warm-up (and the export)
    t_rt = {rt: best_of(lambda st=st: st.predict(images), reps=2) for rt, st in by_runtime.items()}
    same = float(np.mean([(a == b).mean() for a, b in zip(*masks_rt.values())]))

    # each segmenter as the chain loads it, once with the free-size graph only and once allowed fixed-size ones
    fixed = {}
    for seg in (st for st in pipe.stages if st.type_name in ("component_segmentation", "damage_segmentation")):
        spec = {**seg.cfg.model_dump(exclude_none=True), "model": str(seg.cfg.model)}
        by_graph = {"free": load_stage(spec), "fixed": load_stage(spec)}
        by_graph["free"].model.forward.fixed_sizes = 0
        # enough calls of the frames' size that the second stage switches to its fixed-size graph
        out = {k: [st.predict(images[:1]) for _ in range(FIXED_AFTER + 1)][-1] for k, st in by_graph.items()}
        t = {k: best_of(lambda st=st: st.predict(images), reps=3) for k, st in by_graph.items()}
        fixed[seg.type_name] = {"precision": seg.cfg.precision,
                                "free_size": round(1000 * t["free"] / len(images), 1), "fixed_size": round(1000 * t["fixed"] / len(images), 1),
                                "speed_ratio": round(t["free"] / t["fixed"], 2),
                                "same_pixels": round(float((out["free"][0] == out["fixed"][0]).mean()), 5)}

    res = {"frames": len(frames), "ms_per_frame": per_stage, "total_ms_per_frame": round(sum(per_stage.values()), 1),
           "extract_components_ms_per_frame": {"full_size": round(1000 * plain / len(masks), 1),
                                               "block_labelling": round(1000 * fast / len(masks), 1),
                                               "speed_ratio": round(plain / fast, 2)},
           "condition_model_ms": {"crops": len(crops), "as_trained": round(1000 * t_plain, 1),
                                  "folded_nhwc": round(1000 * t_fold, 1), "speed_ratio": round(t_plain / t_fold, 2)},
           "condition_screen_ms": {"crops": len(crops), "nchw": round(1000 * t_ae_plain, 1), "nhwc": round(1000 * t_ae_nhwc, 1),
                                   "speed_ratio": round(t_ae_plain / t_ae_nhwc, 2)},
           "condition_screen_detector_ms": {"crops": len(crops), "calls": len(chunks), "scikit_learn": round(1000 * t_det_sk, 2),
                                            "numpy": round(1000 * t_det_np, 2), "speed_ratio": round(t_det_sk / t_det_np, 2)},
           "damage_runtime_ms_per_frame": {"torch": round(1000 * t_rt["torch"] / len(images), 1),
                                           "onnxruntime": round(1000 * t_rt["onnxruntime"] / len(images), 1),
                                           "speed_ratio": round(t_rt["torch"] / t_rt["onnxruntime"], 2),
                                           "same_pixels": round(same, 5)},
           "onnx_fixed_size_ms_per_frame": fixed}
    tot = res["total_ms_per_frame"]
    md = [f"### Damage-survey chain, budget full, {len(frames)} frames of a 720p pass (`python benchmarks/stage_costs.py`)", "",
          "| stage | ms / frame | share |", "|---|---|---|"]
    md += [f"| {k} | {v} | {v / tot:.0%} |" for k, v in per_stage.items()]
    e, c, r = res["extract_components_ms_per_frame"], res["condition_model_ms"], res["damage_runtime_ms_per_frame"]
    sa, sd = res["condition_screen_ms"], res["condition_screen_detector_ms"]
    md += ["", "| shortcut | plain | with it | speed ratio |", "|---|---|---|---|",
           f"| component extraction, ms / frame (inside the condition stage) | {e['full_size']} | {e['block_labelling']} | {e['speed_ratio']}x |",
           f"| condition model on {c['crops']} crops, ms (BatchNorm folded, NHWC) | {c['as_trained']} | {c['folded_nhwc']} | {c['speed_ratio']}x |",
           f"| condition screen's autoencoders on {sa['crops']} crops, ms (NHWC) | {sa['nchw']} | {sa['nhwc']} | {sa['speed_ratio']}x |",
           f"| condition screen's mixture detector on {sd['crops']} crops in {sd['calls']} calls, ms (numpy) | "
           f"{sd['scikit_learn']} | {sd['numpy']} | {sd['speed_ratio']}x |",
           f"| damage segmenter, ms / frame (`runtime: onnxruntime` vs `torch`; {r['same_pixels']:.2%} of mask pixels equal) | "
           f"{r['torch']} | {r['onnxruntime']} | {r['speed_ratio']}x |"]
    # at `precision: int8` only the fixed-size graph is quantized (pipeline/models/onnx.py): that row is int8 against float
    md += [f"| {name.split('_')[0]} segmenter under ONNX Runtime, ms / frame (fixed-size graph{' at int8' if v['precision'] == 'int8' else ''} "
           f"vs free-size float; {v['same_pixels']:.2%} of "
           f"mask pixels equal) | {v['free_size']} | {v['fixed_size']} | {v['speed_ratio']}x |" for name, v in fixed.items()]
    text = "\n".join(md) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "stage_costs.json").write_text(json.dumps(res, indent=2))
    (RESULTS / "stage_costs.md").write_text(text)


if __name__ == "__main__":
    main()
