"""The hard-hat rule on hand-built geometry: one case per clause of the rule."""

import numpy as np
import pytest

from pipeline.safety.core import Detections
from pipeline.safety.rule import RuleConfig, decide, demote_faint

PERSON, HAT, HEAD = 0, 1, 2


def dets(*rows):
    """rows: (class, x0, y0, x1, y1, conf[, kx, ky, kconf])"""
    xyxy = np.array([r[1:5] for r in rows], float).reshape(-1, 4)
    kp = np.array([r[6:8] if len(r) > 6 else (np.nan, np.nan) for r in rows], float).reshape(-1, 2)
    kc = np.array([r[8] if len(r) > 6 else 0.0 for r in rows], float)
    return Detections(xyxy, np.array([r[5] for r in rows], float), np.array([r[0] for r in rows]), kp, kc,
                      np.arange(len(rows)))


def person(x, head_y=100, conf=0.9, kconf=0.9, height=300):
    """A standing worker whose head centre is at (x, head_y); head is ~height * 0.13 tall."""
    top = head_y - 0.065 * height
    return (PERSON, x - 40, top, x + 40, top + height, conf, x, head_y, kconf)


def worn_hat(x, head_y=100, conf=0.8, r=19.5):
    return (HAT, x - 1.25 * r, head_y - 1.25 * r, x + 1.25 * r, head_y + 0.25 * r, conf)


def statuses(*rows, **cfg):
    return [d.status for d in decide(dets(*rows), RuleConfig(head_source="pose", **cfg))]


def test_worn_hat_counts():
    d = decide(dets(person(200), worn_hat(200)), RuleConfig(head_source="pose"))
    assert [x.status for x in d] == ["worn"]
    assert d[0].why["contains_head_point"] and d[0].hat_score == pytest.approx(0.8)


def test_no_hat_is_a_violation():
    assert statuses(person(200)) == ["no_hat"]


def test_unconfident_keypoint_is_unknown_not_violation():
    d = decide(dets(person(200, kconf=0.2)), RuleConfig(head_source="pose"))
    assert d[0].status == "unknown" and "0.20" in d[0].why["rule"]


def test_hat_held_at_chest_height_is_not_worn():
    # hat in front of the chest, about 1.5 head heights below the head point
    chest = (HAT, 180, 150, 220, 175, 0.9)
    assert statuses(person(200), chest) == ["no_hat"]


def test_hat_held_up_beside_the_head_is_not_worn():
    # a big hat box held beside the face: it reaches the head point but sits to one side
    beside = (HAT, 195, 70, 250, 110, 0.9)
    d = decide(dets(person(200), beside), RuleConfig(head_source="pose"))
    assert d[0].status == "no_hat"
    assert "offset_across" in d[0].why["candidates"][0]["failed"]


def test_hat_held_just_under_the_chin_is_not_worn():
    # the box still covers the head point, but its centre is below it: held, not worn
    chin = (HAT, 180, 95, 220, 130, 0.9)
    d = decide(dets(person(200), chin), RuleConfig(head_source="pose"))
    assert d[0].status == "no_hat"
    assert "hat_centre_above_point" in d[0].why["candidates"][0]["failed"]


def test_hat_on_the_ground_is_not_worn():
    ground = (HAT, 260, 370, 300, 395, 0.95)
    assert statuses(person(200), ground) == ["no_hat"]


def test_a_far_bigger_hat_box_does_not_count():
    huge = (HAT, 100, 20, 300, 110, 0.9)  # five head-widths wide: not this head's hat
    assert statuses(person(200), huge) == ["no_hat"]


def test_one_hat_between_two_close_workers_counts_once():
    # two heads 30 px apart; one hat box covers both head points
    hat = (HAT, 170, 75, 235, 105, 0.9)
    d = decide(dets(person(190), person(215), hat), RuleConfig(head_source="pose", max_offset=1.0))
    assert sorted(x.status for x in d) == ["no_hat", "worn"]
    loser = next(x for x in d if x.status == "no_hat")
    assert "closer-fitting" in loser.why["rule"]


def test_each_of_two_close_workers_keeps_their_own_hat():
    d = statuses(person(190), person(230), worn_hat(190), worn_hat(230), max_offset=1.0)
    assert d == ["worn", "worn"]


def test_low_confidence_hat_is_ignored():
    assert statuses(person(200), worn_hat(200, conf=0.1)) == ["no_hat"]


def test_head_box_source_uses_box_centre():
    head = (HEAD, 180, 80, 214, 120, 0.8)
    d = decide(dets(head, worn_hat(197, head_y=100, r=17)), RuleConfig(head_source="head_box"))
    assert [x.status for x in d] == ["worn"] and d[0].head.source == "head_box"


def test_both_sources_merge_one_worker():
    head = (HEAD, 183, 80, 217, 120, 0.8)
    d = decide(dets(person(200), head, worn_hat(200)), RuleConfig(head_source="both"))
    assert len(d) == 1 and d[0].status == "worn" and d[0].head.source == "both"


def test_bad_rule_config_is_rejected():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        RuleConfig(head_source="elbow")
    with pytest.raises(ValidationError):
        RuleConfig(keypoint_conf=1.5)


def test_loose_predicted_hat_box_slightly_below_the_point_still_counts():
    # a detector's box around hat and head alike: its centre a hair below the head point
    loose = (HAT, 182, 82, 218, 120, 0.9)  # centre y 101 vs head point 100; head height ~39
    d = decide(dets(person(200), loose), RuleConfig(head_source="pose"))
    assert d[0].status == "worn"
    assert decide(dets(person(200), loose), RuleConfig(head_source="pose", max_below=0.0))[0].status == "no_hat"


def test_faint_no_hat_calls_become_unknown_and_sure_ones_stay():
    faint = person(100, conf=0.3)
    faint_hat = worn_hat(300, conf=0.2)  # below hat_conf: not worn, but it weakens the no_hat call under it
    rows = (person(300), faint_hat, faint, person(500, conf=0.9), worn_hat(500), person(700, conf=0.6))
    d = decide(dets(*rows), RuleConfig(head_source="pose"))
    by_x = {round(x.head.point[0]): x for x in d}
    assert [by_x[k].status for k in (100, 300, 500, 700)] == ["no_hat", "no_hat", "worn", "no_hat"]
    out = {round(x.head.point[0]): x for x in demote_faint(d, 0.5)}
    # 0.3 x 1; 0.9 x (1 - 0.2) = 0.72; worn untouched; 0.6 x 1
    assert [out[k].status for k in (100, 300, 500, 700)] == ["unknown", "no_hat", "worn", "no_hat"]
    assert "0.30 < 0.5" in out[100].why["rule"] and out[100].why["no_hat_rule"] == by_x[100].why["rule"]
    assert [x.status for x in demote_faint(d, 0.75)].count("no_hat") == 0
    assert demote_faint(d, 0.0) == d
