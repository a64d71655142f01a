"""The two evaluation splits of every LabUtopia task, defined in one place (README: "Splits").

`id` is the training distribution. `ood` changes what a policy sees and where things are: glassware
sizes and colours never used in `id`, a shifted + mirrored layout region, a different bench colour
and a dimmer, coloured, side-on light. The physics and the success rules are the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lerobot_labvla.errors import LabVLAError


@dataclass(frozen=True)
class Split:
    """Ranges a task samples its scene from (all lengths in metres, colours RGBA)."""

    name: str
    description: str
    beaker_radius: tuple[tuple[float, float], ...]  # bands of the grasped beaker's outer radius
    beaker_height: tuple[tuple[float, float], ...]  # bands of its height
    glass_colors: tuple[tuple[float, float, float, float], ...]
    glass_color_names: tuple[str, ...]  # what instructions call each of `glass_colors`
    button_colors: tuple[tuple[str, tuple[float, float, float, float]], ...]  # (name, rgba) of the press buttons
    jitter: float  # uniform +-jitter on every object's x and y
    device_yaw: float  # devices (oven, panels, hot plate) turn by up to +-device_yaw rad
    shift: tuple[float, float]  # added to every object's nominal (x, y)
    mirror: bool  # swap left and right (y -> -y) of the nominal layout
    bench_rgba: tuple[float, float, float, float]
    light_pos: tuple[float, float, float]
    light_dir: tuple[float, float, float]
    light_diffuse: tuple[float, float, float]

    def xy(self, rng: np.random.Generator, x: float, y: float) -> tuple[float, float]:
        """A nominal layout position, transformed and jittered for this split."""
        y = -y if self.mirror else y
        return (x + self.shift[0] + rng.uniform(-self.jitter, self.jitter),
                y + self.shift[1] + rng.uniform(-self.jitter, self.jitter))

    def glass(self, rng: np.random.Generator, colour: int | None = None) -> dict:
        """Radius, height and colour (index `colour` into `glass_colors`, else random) of a graspable beaker."""
        radius = self.beaker_radius[int(rng.integers(len(self.beaker_radius)))]
        height = self.beaker_height[int(rng.integers(len(self.beaker_height)))]
        k = int(rng.integers(len(self.glass_colors))) if colour is None else colour
        return {"radius": float(rng.uniform(*radius)), "height": float(rng.uniform(*height)),
                "rgba": self.glass_colors[k]}

    def two_colours(self, rng: np.random.Generator) -> tuple[int, int]:
        """Indices of two different glass colours: the named object's and a distractor's."""
        a, b = rng.choice(len(self.glass_colors), size=2, replace=False)
        return int(a), int(b)


SPLITS: dict[str, Split] = {
    "id": Split(
        name="id",
        description="training distribution: beaker r 2.2-2.6 cm, h 9-11 cm, clear/blue/green glass, red/green/blue buttons, nominal layout +-8 cm, devices turned +-17 deg, overhead white light",
        beaker_radius=((0.022, 0.026),), beaker_height=((0.09, 0.11),),
        glass_colors=((0.85, 0.9, 0.95, 0.4), (0.35, 0.5, 1.0, 0.6), (0.35, 0.85, 0.45, 0.6)),
        glass_color_names=("clear", "blue", "green"),
        button_colors=(("red", (0.85, 0.1, 0.1, 1)), ("green", (0.1, 0.6, 0.15, 1)), ("blue", (0.1, 0.3, 0.85, 1))),
        jitter=0.08, device_yaw=0.3, shift=(0.0, 0.0), mirror=False, bench_rgba=(0.55, 0.6, 0.62, 1),
        light_pos=(0.5, 0.0, 1.5), light_dir=(0.0, 0.0, -1.0), light_diffuse=(0.6, 0.6, 0.6),
    ),
    "ood": Split(
        name="ood",
        description="unseen: beaker r 1.9-2.1 or 2.7-2.9 cm, h 8 or 12 cm, amber/pink glass, yellow/purple/orange buttons, layout mirrored and shifted 4 cm (+-8 cm), dark bench, dim warm side light",
        beaker_radius=((0.019, 0.021), (0.027, 0.029)), beaker_height=((0.08, 0.082), (0.118, 0.12)),
        glass_colors=((1.0, 0.6, 0.1, 0.6), (1.0, 0.45, 0.75, 0.55)),
        glass_color_names=("amber", "pink"),
        button_colors=(("yellow", (0.9, 0.8, 0.1, 1)), ("purple", (0.55, 0.2, 0.75, 1)), ("orange", (0.95, 0.45, 0.05, 1))),
        jitter=0.08, device_yaw=0.3, shift=(0.04, 0.0), mirror=True, bench_rgba=(0.25, 0.22, 0.2, 1),
        light_pos=(0.3, -1.0, 0.9), light_dir=(0.2, 0.8, -0.55), light_diffuse=(0.45, 0.35, 0.25),
    ),
}


def get_split(name: str) -> Split:
    if name not in SPLITS:
        raise LabVLAError(f"unknown LabUtopia split {name!r}; expected one of {sorted(SPLITS)}")
    return SPLITS[name]
