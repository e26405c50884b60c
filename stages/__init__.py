"""Swappable pipeline stages. Each declares its config, what it reads and what it writes."""

from stages.base import STAGES, Stage, StageConfig, load_stage, parse_stage, register  # noqa: F401
from stages import segmentation, condition, safety, screen  # noqa: F401,E402  (registers the built-in stages)
