"""Who wears a hard hat: the head-keypoint rule, with shapely geometry, and why each decision was taken.

Base rule (head-keypoint paper): a worker wears a hat when their head point is confident and lies
inside a hard-hat box. On top of it:
- the hat must sit on the upper part of the head region and be centred over it, so a hat beside
  the head, or held at chest height, does not count;
- its size must be that of a hat on this head, not of a hat far nearer or farther away;
- each hat goes to at most one head (an optimal one-to-one assignment), so two workers standing
  close together never share one hat.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linear_sum_assignment
from shapely.geometry import Point, box

from pipeline.safety.core import Decision, Detections, Head, call_score


class RuleConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    head_source: str = Field("both", pattern="^(pose|head_box|both)$",
                             description="pose: person keypoints; head_box: head-box centres; both: merged")
    keypoint_conf: float = Field(0.5, ge=0, le=1, description="below this a head point is `unknown`, not a violation")
    person_conf: float = Field(0.3, ge=0, le=1)
    head_conf: float = Field(0.3, ge=0, le=1)
    hat_conf: float = Field(0.3, ge=0, le=1)
    head_scale: float = Field(0.13, gt=0, lt=1, description="head height / person height, when only a point is known")
    max_offset: float = Field(0.6, gt=0, description="hat centre to head point, across, in head widths")
    min_cover: float = Field(0.25, ge=0, le=1, description="share of the upper head region the hat must cover")
    max_below: float = Field(0.15, ge=0, description="how far the hat centre may sit below the head point, in head "
                                                     "heights: predicted boxes are loose, a hat held at the chest is far lower")
    size_range: tuple[float, float] = Field((0.6, 3.0), description="hat width / head width")
    extra_checks: bool = Field(True, description="false: the paper's base rule only (containment, hats may be shared)")


def heads_from(det: Detections, cfg: RuleConfig) -> list[Head]:
    """Worker heads from person keypoints, head boxes, or both (a head box holding a person's point is that person's)."""
    heads: list[Head] = []
    if cfg.head_source in ("pose", "both"):
        p = det.of("person")
        for i in range(len(p)):
            if p.confidence[i] < cfg.person_conf or np.isnan(p.keypoints[i]).any():
                continue
            x0, y0, x1, y1 = p.xyxy[i]
            s = max(cfg.head_scale * (y1 - y0), 0.25 * (x1 - x0))
            (px, py), kc = p.keypoints[i], float(p.keypoint_confidence[i])
            heads.append(Head((px, py), kc, (px - 0.425 * s, py - 0.5 * s, px + 0.425 * s, py + 0.5 * s),
                              float(p.confidence[i]), "pose", tuple(p.xyxy[i]), int(p.tracker_id[i])))
    if cfg.head_source in ("head_box", "both"):
        hb = det.of("head")
        used = set()
        for h in heads:  # refine pose heads with the head box that holds their point
            pt = Point(h.point)
            best = min((j for j in range(len(hb)) if j not in used and hb.confidence[j] >= cfg.head_conf
                        and box(*hb.xyxy[j]).covers(pt)),
                       key=lambda j: box(*hb.xyxy[j]).centroid.distance(pt), default=None)
            if best is not None:
                used.add(best)
                # a head box around the keypoint confirms it: the point is as sure as that box
                h.region, h.source, h.point_conf = tuple(hb.xyxy[best]), "both", 1.0
        for j in range(len(hb)):
            if j in used or hb.confidence[j] < cfg.head_conf:
                continue
            x0, y0, x1, y1 = hb.xyxy[j]
            # a point taken from a box is where the box is; `head_conf` already judged the box
            heads.append(Head(((x0 + x1) / 2, (y0 + y1) / 2), 1.0, tuple(hb.xyxy[j]), float(hb.confidence[j]),
                              "head_box", None, int(hb.tracker_id[j])))
    return heads


def _fit(head: Head, hat, cfg: RuleConfig) -> tuple[float, dict]:
    """How well `hat` sits on `head` (0 = not at all) and the checks behind that number."""
    hx0, hy0, hx1, hy1 = head.region
    hw, hh = hx1 - hx0, hy1 - hy0
    hat_poly = box(*hat)
    pt = Point(head.point)
    upper = box(hx0, hy0, hx1, hy0 + 0.5 * hh)
    cx, cy = hat_poly.centroid.x, hat_poly.centroid.y
    checks = {
        "contains_head_point": bool(hat_poly.covers(pt)),
        "offset_across": round(abs(cx - head.point[0]) / max(hw, 1e-6), 3),
        "hat_centre_above_point": bool(cy <= head.point[1] + cfg.max_below * hh),
        "upper_head_cover": round(hat_poly.intersection(upper).area / max(upper.area, 1e-6), 3),
        "size_ratio": round((hat[2] - hat[0]) / max(hw, 1e-6), 3),
    }
    failed = [k for k, bad in (
        ("contains_head_point", not checks["contains_head_point"]),
        ("offset_across", checks["offset_across"] > cfg.max_offset),  # beside the head
        ("hat_centre_above_point", not checks["hat_centre_above_point"]),  # below the head: chest height
        ("upper_head_cover", checks["upper_head_cover"] < cfg.min_cover),
        ("size_ratio", not cfg.size_range[0] <= checks["size_ratio"] <= cfg.size_range[1]),
    ) if bad and (cfg.extra_checks or k == "contains_head_point")]
    checks["failed"] = failed
    # prefer hats that cover the upper head well and sit straight above the point
    if failed:
        return 0.0, checks
    if not cfg.extra_checks:
        return 1.0, checks
    score = max(checks["upper_head_cover"], 1e-3) * (1 - 0.5 * checks["offset_across"] / cfg.max_offset)
    return score, checks


def decide(det: Detections, cfg: RuleConfig) -> list[Decision]:
    heads = heads_from(det, cfg)
    hats = det.of("hardhat")
    fit = np.zeros((len(heads), len(hats)))
    checks = [[None] * len(hats) for _ in heads]
    for i, h in enumerate(heads):
        for j in range(len(hats)):
            g, checks[i][j] = _fit(h, hats.xyxy[j], cfg)
            fit[i, j] = g * hats.confidence[j]
    # the strongest fitting hat below the threshold still says something: a "no hat" with a faint hat
    # on the head is less sure than one with nothing there (used to rank violations)
    evidence = [float(max((hats.confidence[j] for j in range(len(hats)) if fit[i, j] > 0), default=0.0))
                for i in range(len(heads))]
    keep = hats.confidence >= cfg.hat_conf
    hats, fit = hats[keep], fit[:, keep]
    checks = [[c for c, k in zip(row, keep) if k] for row in checks]
    assigned = {}
    if fit.size and cfg.extra_checks:
        for i, j in zip(*linear_sum_assignment(-fit)):
            if fit[i, j] > 0:
                assigned[i] = j
    elif fit.size:  # base rule: every head takes its best hat, shared or not
        assigned = {i: int(fit[i].argmax()) for i in range(len(heads)) if fit[i].max() > 0}
    out = []
    for i, h in enumerate(heads):
        near = [{"hat": [round(float(v), 1) for v in hats.xyxy[j]], "hat_conf": round(float(hats.confidence[j]), 3),
                 **checks[i][j]} for j in range(len(hats)) if checks[i][j]["contains_head_point"] or fit[i, j] > 0]
        if h.point_conf < cfg.keypoint_conf:
            out.append(Decision(h, "unknown", why={"rule": f"head point confidence {h.point_conf:.2f} < {cfg.keypoint_conf}",
                                                   "candidates": near}))
        elif i in assigned:
            j = assigned[i]
            out.append(Decision(h, "worn", tuple(hats.xyxy[j]), float(hats.confidence[j]),
                                why={"rule": "head point inside a hat on the upper head", **checks[i][j],
                                     "others": [c for c in near if c["hat"] != [round(float(v), 1) for v in hats.xyxy[j]]]}))
        else:
            taken = [c for c in near if not c["failed"]]
            rule = ("every fitting hat went to a closer-fitting head" if taken else
                    "no hat box fits this head" if near else "no hat box holds the head point")
            out.append(Decision(h, "no_hat", why={"rule": rule, "candidates": near,
                                                  "faint_hat_conf": round(evidence[i], 3)}))
    return out


def demote_faint(decisions: list[Decision], min_score: float) -> list[Decision]:
    """`no_hat` calls scoring below `min_score` (`call_score`) become `unknown`: on real photos most such calls
    fall on no head at all (machinery, background) or on a hatted head, and alerts nobody can trust bury the real ones."""
    out = []
    for d in decisions:
        s = call_score(d.to_json()) if d.status == "no_hat" else 1.0
        out.append(d if s >= min_score else replace(d, status="unknown", why={
            **d.why, "rule": f"too faint to call no_hat: score {s:.2f} < {min_score}", "no_hat_rule": d.why.get("rule")}))
    return out
