"""Zones drawn on the camera image: where hats are mandatory, and where nobody is checked."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from shapely.geometry import Point, Polygon
from shapely.validation import explain_validity


class Zone(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: Literal["mandatory", "ignore"]
    polygon: list[tuple[float, float]] = Field(min_length=3, description="image points; in [0, 1] when `normalized`")
    normalized: bool = False

    @field_validator("polygon")
    @classmethod
    def _valid(cls, pts):
        poly = Polygon(pts)
        if not poly.is_valid or poly.area <= 0:
            # e.g. "Self-intersection[0.5 0.5]": say where, so the user can fix the point order
            raise ValueError(f"polygon is not a simple area ({explain_validity(poly)}); list its corners in order "
                             f"around the edge, without crossing")
        return pts

    def shape(self, size: tuple[int, int]) -> Polygon:
        w, h = size
        return Polygon([(x * w, y * h) for x, y in self.polygon] if self.normalized else self.polygon)


class ZoneMap:
    """Which zone a worker stands in. Without mandatory zones the whole frame is mandatory."""

    def __init__(self, zones: list[Zone], size: tuple[int, int]):
        self.mandatory = [(z.name, z.shape(size)) for z in zones if z.kind == "mandatory"]
        self.ignore = [(z.name, z.shape(size)) for z in zones if z.kind == "ignore"]

    def locate(self, point) -> tuple[bool, str | None]:
        """(checked, zone name) for a worker at `point` (their feet, or their head if no body was seen)."""
        p = Point(point)
        if any(poly.covers(p) for _, poly in self.ignore):
            return False, None
        if not self.mandatory:
            return True, None
        name = next((n for n, poly in self.mandatory if poly.covers(p)), None)
        return name is not None, name
