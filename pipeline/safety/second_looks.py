"""What the photo rule does after `decide`, in its one order: the hat check, the head check, the mirrored
borders, then the cut on faint `no_hat` calls. The rule stage and the cross-validation benchmark both run it,
so a benchmark row scores the same chain `predict` writes."""

from __future__ import annotations

import numpy as np

from pipeline.safety.core import Decision
from pipeline.safety.pads import find_pads, reflect_into_pads
from pipeline.safety.rule import demote_faint


def second_looks(decisions: list[Decision], image: np.ndarray, hat_check=None, head_check=None,
                 mirrored_borders: bool = False, no_hat_min_score: float = 0.0) -> tuple[list[Decision], dict[str, int]]:
    """The decisions after each look that is set (a check None, borders off or a cut of 0 skips it), and what
    the borders and the cut did: {padded: 0 or 1, reflected, too_faint}. The checks count their own."""
    counts = {"padded": 0, "reflected": 0, "too_faint": 0}
    if hat_check is not None:
        decisions = hat_check.veto(decisions, image)
    if head_check is not None:  # before reflection: a head in a pad is upside down
        decisions = head_check.take_back(decisions, image)
    if mirrored_borders:
        pads = find_pads(image)
        decisions = reflect_into_pads(decisions, pads, image.shape)
        counts["padded"] = int(bool(pads))
        counts["reflected"] = sum(d.why.get("rule", "").startswith("reflection") for d in decisions)
    if no_hat_min_score > 0:
        before = sum(d.status == "no_hat" for d in decisions)
        decisions = demote_faint(decisions, no_hat_min_score)
        counts["too_faint"] = before - sum(d.status == "no_hat" for d in decisions)
    return decisions, counts
