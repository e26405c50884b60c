"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_FLOW = ROOT / "flows" / "configs" / "damage-survey.yaml"


def shipped_flow_config(dest: Path, source: dict) -> Path:
    """The shipped damage-survey config with `source:` replaced, written to `dest` with stage
    paths made absolute so it works from any folder."""
    cfg = yaml.safe_load(SHIPPED_FLOW.read_text())
    cfg["stages"] = [str((SHIPPED_FLOW.parent / s).resolve()) for s in cfg["stages"]]
    cfg["source"] = source
    dest.write_text(yaml.safe_dump(cfg))
    return dest
