"""Flight roll-up: physical components (linked views) with their condition and damage."""

from __future__ import annotations

from collections import Counter

import numpy as np

from pipeline.core import COMPONENT_CLASSES, DAMAGE_STATES, DAMAGEABLE
from pipeline.linking import link, merge_fragments, presence


def summarise_track(views: list[dict]) -> dict:
    cls = views[0]["class_id"]
    best = max(views, key=lambda v: v["area"])
    rated = [v for v in views if v["state"] is not None]
    states = [v["state"] for v in rated]
    # the median over views damps single-frame misclassifications in both directions; weighting each view by its
    # area trusts whole views over slivers at the frame's edge, whose crops show the classifier part of the component
    # (state macro-F1 on four synthetic passes 0.790 / 0.762 / 0.841 / 0.782 -> 0.791 / 0.828 / 0.870 / 0.808)
    state = _weighted_median(states, [v["area"] for v in rated]) if states else None
    ratios = [v["damage_ratio"] for v in views]
    return {
        # frames, not views: pieces of one component segmented apart in one frame are one sighting
        "class": COMPONENT_CLASSES[cls], "class_id": cls, "views": len({v["frame"] for v in views}),
        "first_frame": views[0]["frame"], "last_frame": views[-1]["frame"],
        "state": None if state is None else DAMAGE_STATES[state], "state_id": state,
        "state_votes": dict(Counter(DAMAGE_STATES[s] for s in states)),
        "damage_ratio": round(float(np.median(ratios)), 4), "damage_ratio_max": round(float(max(ratios)), 4),
        "damage_px": best["damage_px"], "best_frame": best["frame"], "best_rect": best["rect"], "gps": best["gps"],
        "mosaic_poly": best["poly"], "segment": best["segment"],
    }


def _weighted_median(values: list[int], weights: list[float]) -> int:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(np.asarray(weights, float)[order])
    return int(np.asarray(values)[order][np.searchsorted(cum, cum[-1] / 2)])


def _severity(t: dict) -> tuple:
    return t["state_id"], t["damage_ratio"]


def roll_up(observations: list[dict], iou: float, max_gap: int, worst_k: int, min_views: int = 2, merge: bool = True,
            footprints: list | None = None, min_presence: float = 0.0) -> dict:
    """Components from per-frame views. With `footprints` (each frame's outline in the mosaic plane), a track
    seen in fewer than `min_presence` of the frames that showed its place is left out as transient."""
    linked = link(observations, iou, max_gap)
    grouped = merge_fragments(linked, max_gap) if merge else linked
    tracks = [summarise_track(v) for v in grouped]
    # a component seen in a single frame of a long pass is more likely a mis-segmentation
    filter_singles = len({o["frame"] for o in observations}) >= 2 * min_views
    single = [filter_singles and t["views"] < min_views for t in tracks]
    # presence only for the tracks the single-view rule keeps (on the thermal pass, 188 of 2,661)
    judged = [g for g, s in zip(grouped, single) if not s]
    shares = iter(presence(judged, footprints, max_gap) if footprints and min_presence > 0 else [1.0] * len(judged))
    keep, dropped, transient = [], [], 0
    for t, s in zip(tracks, single):
        if s:
            dropped.append(t)
            continue
        p = next(shares)
        t["presence"] = round(p, 3)
        if p < min_presence:
            # seen in a few of the many frames that showed its place: on synthetic passes nearly all are a
            # segmenter's misreading (a beam in a wall's texture) or a repeat of a component already counted
            transient += 1
        else:
            keep.append(t)
    # but damage must not vanish from the report: where registration broke (a cut, photos with too
    # little overlap) a real component is seen in one frame only, so damaged ones are listed apart.
    # Damaged transient tracks are not: on synthetic seeds 3 / 21 / 37, of 9 / 16 / 7 such tracks, 8 / 14 / 2
    # showed no instance of their class, 1 / 1 / 4 repeated one already reported, and 0 / 1 / 1 were a real
    # component missed otherwise, so listing them would mostly add false alarms to the report
    unlinked = sorted((t for t in dropped if (t["state_id"] or 0) > 0), key=_severity, reverse=True)
    per_type = {}
    for name in COMPONENT_CLASSES[1:]:
        ts = [t for t in keep if t["class"] == name]
        entry = {"count": len(ts)}
        if COMPONENT_CLASSES.index(name) in DAMAGEABLE and ts:
            hist = Counter(t["state"] for t in ts)
            entry |= {"states": {s: hist.get(s, 0) for s in DAMAGE_STATES},
                      "damaged_share": round(sum(t["state_id"] > 0 for t in ts) / len(ts), 4),
                      "mean_damage_ratio": round(float(np.mean([t["damage_ratio"] for t in ts])), 4)}
        per_type[name] = entry
    damageable = [t for t in keep if t["state_id"] is not None]
    worst = sorted(damageable, key=_severity, reverse=True)[:worst_k]
    return {"components": keep, "per_type": per_type, "worst": worst,
            "unique_components": len(keep), "views": len(observations), "dropped_single_views": len(dropped),
            "dropped_transient": transient, "unlinked_damage": unlinked}
