"""Photos squared up by mirror-padding: finding the pads, and reflecting the rule's decisions into them."""

import cv2
import numpy as np
import pytest
from skimage import data

from pipeline.core import Frame, FrameResult
from pipeline.safety.pads import Pads, find_pads, reflect_into_pads
from pipeline.safety.rule import RuleConfig, decide
from stages import STAGES
from tests.test_rule import dets, person, worn_hat


def _padded(top=0, bottom=0, left=0, right=0, border=cv2.BORDER_REFLECT):
    scene = cv2.cvtColor(data.astronaut()[60:360, 40:440], cv2.COLOR_RGB2BGR)  # 300 x 400
    return cv2.copyMakeBorder(scene, top, bottom, left, right, border)


@pytest.mark.parametrize("border", [cv2.BORDER_REFLECT, cv2.BORDER_REFLECT_101])
def test_mirror_pads_are_found_to_within_a_few_pixels(border):
    p = find_pads(_padded(top=60, bottom=40, left=24, border=border))
    assert abs(p.top - 60) <= 4 and abs(p.bottom - 40) <= 4 and abs(p.left - 24) <= 4 and p.right == 0, p


@pytest.mark.parametrize("name", ["brick", "gravel", "grass", "coffee", "rocket"])
def test_unpadded_photos_and_textures_have_no_pads(name):
    """Stationary textures look alike mirrored or not, and a flat sky is symmetric about any line: neither is a pad."""
    im = getattr(data, name)()
    assert not find_pads(im if im.ndim == 2 else np.ascontiguousarray(im[..., ::-1]))


def test_decisions_beside_a_pad_are_reflected_into_it_with_their_status():
    # a 400 x 600 photo with a 100 px mirrored top: a hatted worker whose head is 30 px below the pad's edge
    # appears upside down 30 px above it; a bare head deeper in the photo has no copy in the pad
    decisions = decide(dets(person(200, head_y=130), worn_hat(200, head_y=130), person(420, head_y=300)),
                       RuleConfig(head_source="pose"))
    assert [d.status for d in decisions] == ["worn", "no_hat"]
    out = reflect_into_pads(decisions, Pads(top=100), (400, 600))
    assert len(out) == 3
    copy = out[2]
    assert copy.status == "worn" and copy.head.point == pytest.approx((200, 70))
    assert copy.hat_box[1] > copy.head.point[1] - 5  # the copy's hat hangs below its head, as in the pad
    assert copy.why["rule"] == "reflection into the mirrored top border" and copy.head.track_id == -1
    assert reflect_into_pads(decisions, Pads(), (400, 600)) is decisions


def test_the_rules_own_calls_in_a_pad_give_way_to_a_reflection_but_are_kept_where_none_lands():
    decisions = decide(dets(person(200, head_y=130), person(200, head_y=72), person(500, head_y=40)),
                       RuleConfig(head_source="pose"))
    out = reflect_into_pads(decisions, Pads(top=100), (400, 600))
    points = sorted(tuple(round(v) for v in d.head.point) for d in out)
    # (200, 72) sits inside the reflection of (200, 130) and goes; (500, 40) has no reflection over it and stays
    assert points == [(200, 70), (200, 130), (500, 40)]


def test_the_photo_rule_stage_reflects_on_a_padded_frame_and_leaves_an_unpadded_one_alone():
    cls = STAGES["hardhat_rule"]
    stage = cls(cls.Config(type="hardhat_rule", head_source="pose", mirrored_borders=True))
    padded, plain = _padded(top=80), _padded()
    rows = [person(200, head_y=110), worn_hat(200, head_y=110)]
    results = [FrameResult(Frame(i, im, 0.0, "test")) for i, im in enumerate((padded, plain))]
    for r in results:
        r.detections = dets(*rows)
    stage.process(results)
    assert [d.status for d in results[0].decisions] == ["worn", "worn"]
    assert results[0].decisions[1].head.point[1] == pytest.approx(50, abs=6)
    assert [d.status for d in results[1].decisions] == ["worn"]
    assert stage.counters() == {"frames": 2, "padded": 1, "reflected": 1}
