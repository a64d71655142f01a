"""The six domain-randomization axes (+ instruction paraphrasing) as ranges, and the three presets.

A workflow names a preset or overrides single ranges:

    randomize: full
    randomize: {preset: light, clutter: {count: [1, 3]}, camera: {pos: 0.03}}

`labvla-genesis generate/preview --randomize none|light|full` picks a preset for a run (it replaces
the workflow's `randomize:`). Pure data (pydantic, no MuJoCo), so the workflow schema can import it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PRESETS = ("none", "light", "full")


class _Axis(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LayoutAxis(_Axis):
    radius: float = Field(0.0, ge=0.0, le=0.2, description="how far (m) the builder may move an object from its nominal spot")


class CameraAxis(_Axis):
    pos: float = Field(0.0, ge=0.0, le=0.15, description="+- m on each axis of the fixed cameras' positions")
    lookat: float = Field(0.0, ge=0.0, le=0.1, description="+- m on each axis of the point they look at")
    fovy: float = Field(0.0, ge=0.0, le=10.0, description="+- degrees of field of view")


class LightingAxis(_Axis):
    intensity: tuple[float, float] = Field((1.0, 1.0), description="scale range of the light's diffuse intensity")
    direction: float = Field(0.0, ge=0.0, le=0.8, description="tilt (rad) of the light's direction")
    position: float = Field(0.0, ge=0.0, le=0.5, description="+- m of the light's position")
    tint: float = Field(0.0, ge=0.0, le=0.3, description="+- per RGB channel of the light colour")


class AppearanceAxis(_Axis):
    recolor: float = Field(0.0, ge=0.0, le=1.0, description="probability to recolour an object whose colour no text names")
    material: bool = Field(False, description="vary glass/plastic (transparency, shininess) and device finishes")
    texture: bool = Field(False, description="a procedural texture (checker/grid, random colours) on the bench")


class JitterAxis(_Axis):
    xy: float | None = Field(None, ge=0.0, le=0.08, description="+- m on every object's x and y (null: the scene's `jitter`)")
    yaw: float = Field(0.0, ge=0.0, le=0.6, description="+- rad of device orientation")


class ClutterAxis(_Axis):
    count: tuple[int, int] = Field((0, 0), description="min, max distractors (never a type the workflow uses)")
    shelf: float = Field(0.0, ge=0.0, le=1.0, description="probability of a shelf at the back of the bench that "
                         "1-2 of the distractors stand on (no preset uses it)")


class LanguageAxis(_Axis):
    paraphrase: bool = Field(False, description="templates + synonyms on top of the workflow's own wordings")


class Randomization(_Axis):
    """Ranges of every axis; `preset` fills what is not given."""

    preset: Literal["none", "light", "full"] = "none"
    layout: LayoutAxis = Field(default_factory=LayoutAxis)
    camera: CameraAxis = Field(default_factory=CameraAxis)
    lighting: LightingAxis = Field(default_factory=LightingAxis)
    appearance: AppearanceAxis = Field(default_factory=AppearanceAxis)
    jitter: JitterAxis = Field(default_factory=JitterAxis)
    clutter: ClutterAxis = Field(default_factory=ClutterAxis)
    language: LanguageAxis = Field(default_factory=LanguageAxis)

    @model_validator(mode="before")
    @classmethod
    def _fill_from_preset(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"preset": data}
        if isinstance(data, dict):
            preset = data.get("preset", "none")
            base = PRESET_RANGES.get(preset, {})
            data = {**base, **{k: {**base.get(k, {}), **v} if isinstance(v, dict) else v for k, v in data.items()}}
        return data

    @property
    def axes(self) -> tuple[str, ...]:
        """The axes whose ranges are not all zero (what this randomization varies)."""
        zero = Randomization(preset="none")
        return tuple(a for a in AXES if getattr(self, a) != getattr(zero, a))


AXES = ("layout", "camera", "lighting", "appearance", "jitter", "clutter", "language")
PRESET_RANGES: dict[str, dict[str, dict]] = {
    "none": {"jitter": {"xy": 0.0}},
    "light": {
        "layout": {"radius": 0.03},
        "camera": {"pos": 0.02, "lookat": 0.015, "fovy": 2.0},
        "lighting": {"intensity": (0.85, 1.15), "direction": 0.15, "position": 0.15, "tint": 0.04},
        "appearance": {"recolor": 0.3, "material": False, "texture": True},
        "jitter": {"xy": None, "yaw": 0.1},
        "clutter": {"count": (0, 2)},
        "language": {"paraphrase": True},
    },
    "full": {
        "layout": {"radius": 0.08},
        "camera": {"pos": 0.05, "lookat": 0.04, "fovy": 5.0},
        "lighting": {"intensity": (0.6, 1.4), "direction": 0.4, "position": 0.3, "tint": 0.12},
        "appearance": {"recolor": 1.0, "material": True, "texture": True},
        "jitter": {"xy": 0.04, "yaw": 0.25},
        "clutter": {"count": (2, 5)},
        "language": {"paraphrase": True},
    },
}


def resolve(value: str | dict | Randomization | None) -> Randomization | None:
    """A preset name, a mapping or a `Randomization` -> `Randomization` (None stays None: the legacy scene)."""
    if value is None or isinstance(value, Randomization):
        return value
    if isinstance(value, str) and value not in PRESETS:
        from lerobot_labvla.errors import LabVLAError

        raise LabVLAError(f"unknown randomization preset {value!r}; expected one of {', '.join(PRESETS)}")
    return Randomization.model_validate(value)
