"""The scene builder's asset library: families of procedural lab objects and their parametric variants
(size, colour, material, fill level), each with the footprint and height the placer needs.

    labvla-genesis assets            # families, roles, variant counts
    labvla-genesis assets --all      # every variant id (e.g. beaker/large-amber-fill50)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from lerobot_labvla.sim import assets as A
from lerobot_labvla.sim.assets import clutter as C
from lerobot_labvla.sim.assets.stirring import stirring_rod

# Workflow size -> (radius, height) of a beaker, inside LabUtopia's `id` ranges where they overlap.
BEAKER_SIZES = {"small": (0.022, 0.09), "medium": (0.024, 0.10), "large": (0.026, 0.11)}
GLASS_RGBA = {
    "clear": (0.7, 0.85, 1.0, 0.45), "blue": (0.55, 0.7, 1.0, 0.5), "green": (0.6, 0.95, 0.7, 0.45),
    "amber": (1.0, 0.65, 0.2, 0.55), "pink": (1.0, 0.55, 0.75, 0.5), "red": (0.9, 0.2, 0.15, 1.0),
    "yellow": (0.9, 0.75, 0.1, 1.0), "white": (0.9, 0.9, 0.88, 1.0), "grey": (0.5, 0.5, 0.52, 1.0),
}
SOLID_RGBA = {
    "white": (0.92, 0.92, 0.9, 1), "grey": (0.55, 0.56, 0.58, 1), "cream": (0.93, 0.88, 0.75, 1),
    "blue": (0.2, 0.4, 0.85, 1), "green": (0.15, 0.6, 0.25, 1), "red": (0.85, 0.15, 0.12, 1),
    "yellow": (0.95, 0.8, 0.1, 1), "orange": (0.95, 0.55, 0.15, 1), "black": (0.12, 0.12, 0.13, 1),
}
MAX_PARTICLES = 24  # a full medium beaker; LabUtopia's pour scene uses 20-30
MATERIAL_ALPHA = {"glass": None, "plastic": 0.85}  # plastic: the same tint, nearly opaque


@dataclass(frozen=True)
class Family:
    """One kind of object: its builder, role and the parameter grid its variants come from."""

    name: str
    role: str  # glassware | device | marker | clutter
    builder: Callable
    footprint: Callable[[dict], float]  # kwargs -> radius (m) of the circle it covers on the bench
    height: Callable[[dict], float]
    grid: dict[str, dict[str, dict]]  # axis -> value name -> builder kwargs
    fillable: bool = False
    fills: tuple[float, ...] = (0.0,)
    yaw: bool = False  # the builder takes `yaw`


@dataclass(frozen=True)
class Variant:
    """A family with fixed parameters; `id` is unique in the library (family/value-value-...)."""

    family: Family
    id: str
    kwargs: dict = field(hash=False)
    fill: float = 0.0
    material: str = ""

    @property
    def footprint(self) -> float:
        return self.family.footprint(self.kwargs)

    @property
    def height(self) -> float:
        return self.family.height(self.kwargs)


def _r(default: float, scale: float = 1.0, add: float = 0.0):
    return lambda kw: kw.get("radius", default) * scale + add


def _h(default: float):
    return lambda kw: kw.get("height", default)


def _sizes(table: dict[str, tuple[float, float]]) -> dict[str, dict]:
    return {k: {"radius": r, "height": h} for k, (r, h) in table.items()}


def _rgba(names, table=GLASS_RGBA) -> dict[str, dict]:
    return {n: {"rgba": table[n]} for n in names}


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("beaker", "glassware", A.beaker, _r(0.03), _h(0.10),
           {"size": _sizes(BEAKER_SIZES), "colour": _rgba(("clear", "blue", "green", "amber", "pink"))},
           fillable=True, fills=(0.0, 0.5, 1.0)),
    Family("graduated_cylinder", "glassware", A.graduated_cylinder, _r(0.016, 2.2), lambda kw: kw.get("height", 0.2) + 0.008,
           {"size": _sizes({"small": (0.012, 0.15), "medium": (0.016, 0.2), "large": (0.02, 0.24)}),
            "material": {"glass": {"rgba": GLASS_RGBA["clear"]}, "plastic": {"rgba": (0.85, 0.9, 0.95, 0.85)}}},
           fillable=False),
    Family("flask", "glassware", A.flask, _r(0.045), _h(0.14),
           {"size": {"small": {"radius": 0.038, "height": 0.12}, "medium": {"radius": 0.045, "height": 0.14},
                     "large": {"radius": 0.052, "height": 0.16}},
            "colour": _rgba(("clear", "amber", "green"))}),
    Family("test_tube", "glassware", A.test_tube, _r(0.008), _h(0.12),
           {"size": _sizes({"small": (0.007, 0.10), "medium": (0.008, 0.12), "large": (0.01, 0.15)}),
            "colour": _rgba(("clear", "blue", "pink"))}),
    Family("reagent_bottle", "glassware", A.reagent_bottle, _r(0.03), _h(0.12),
           {"size": _sizes({"small": (0.025, 0.10), "medium": (0.03, 0.12), "large": (0.035, 0.15)}),
            "colour": {"amber": {"rgba": (0.45, 0.3, 0.15, 0.9)}, "clear": {"rgba": (0.8, 0.9, 0.95, 0.6)}}}),
    Family("stirring_rod", "glassware", stirring_rod, lambda kw: 0.02, lambda kw: kw.get("length", 0.2),
           {"length": {"short": {"length": 0.18}, "long": {"length": 0.22}}}),
    Family("test_tube_rack", "device", A.test_tube_rack,
           lambda kw: math.hypot(kw.get("slots", 4) * 0.03 / 2 + 0.004, 0.023), lambda kw: 0.074,
           {"slots": {"4": {"slots": 4}, "6": {"slots": 6}}, "colour": _rgba(("white", "blue"), SOLID_RGBA)}),
    Family("hot_plate", "device", A.hot_plate, lambda kw: math.hypot(0.14, 0.095), lambda kw: 0.076,
           {"housing": _rgba(("white", "cream"), SOLID_RGBA),
            "plate": {"plate75": {"plate_radius": 0.075}, "plate65": {"plate_radius": 0.065}}}, yaw=True),
    Family("button_panel", "device", A.button_panel, lambda kw: math.hypot(0.05, 0.08), lambda kw: 0.056,
           {"button": _rgba(("green", "red", "blue"), SOLID_RGBA),
            "housing": {n: {"housing_rgba": SOLID_RGBA[n]} for n in ("cream", "grey")}}, yaw=True),
    Family("cabinet", "device", A.cabinet, lambda kw: math.hypot(kw.get("width", 0.3), kw.get("depth", 0.25)) / 2 + 0.04,
           _h(0.26), {"width": {"w30": {"width": 0.3}, "w34": {"width": 0.34}},
                      "colour": _rgba(("white", "grey"), SOLID_RGBA)}, yaw=True),
    Family("target_zone", "marker", A.target_zone, lambda kw: math.hypot(*kw.get("half_size", (0.06, 0.06))),
           lambda kw: 0.001, {"size": {"s": {"half_size": (0.05, 0.05)}, "m": {"half_size": (0.06, 0.06)}},
                              "colour": {n: {"rgba": (*SOLID_RGBA[n][:3], 0.6)} for n in ("green", "yellow", "blue")}}),
    Family("petri_dish", "clutter", C.petri_dish, _r(0.045, 1.0, 0.002), lambda kw: 0.016,
           {"size": {"d90": {"radius": 0.045}, "d60": {"radius": 0.03}},
            "colour": {"clear": {"rgba": (0.85, 0.92, 0.95, 0.5)}, "agar": {"rgba": (0.95, 0.85, 0.55, 0.8)}}}),
    Family("tip_box", "clutter", C.tip_box, lambda kw: math.hypot(0.06, 0.04), lambda kw: 0.1,
           {"colour": _rgba(("blue", "green", "yellow", "orange"), SOLID_RGBA)}),
    Family("notebook", "clutter", C.notebook, lambda kw: math.hypot(*kw.get("size", (0.105, 0.074))), lambda kw: 0.008,
           {"size": {"a5": {"size": (0.105, 0.074)}, "a6": {"size": (0.074, 0.052)}},
            "colour": _rgba(("blue", "red", "black", "green"), SOLID_RGBA)}),
    Family("wash_bottle", "clutter", C.wash_bottle, _r(0.03), _h(0.14),
           {"cap": {n: {"cap_rgba": SOLID_RGBA[n]} for n in ("red", "blue", "yellow", "green")}}),
    Family("sample_vial", "clutter", C.sample_vial, _r(0.011), _h(0.05),
           {"size": {"4ml": {"radius": 0.008, "height": 0.045}, "20ml": {"radius": 0.013, "height": 0.06}},
            "cap": {n: {"cap_rgba": SOLID_RGBA[n]} for n in ("black", "red", "blue")}}),
    Family("ice_bucket", "clutter", C.ice_bucket, _r(0.07), _h(0.08),
           {"colour": _rgba(("orange", "blue", "white"), SOLID_RGBA)}),
    # Furniture other clutter stands on (scene_builder: `randomize: {clutter: {shelf: p}}`).
    Family("shelf", "shelf", C.shelf, lambda kw: math.hypot(kw.get("width", 0.3), kw.get("depth", 0.14)) / 2,
           lambda kw: kw.get("height", 0.2) + C.SHELF_BOARD,
           {"width": {"w30": {"width": 0.3}, "w40": {"width": 0.4}}, "height": {"h16": {"height": 0.16},
            "h22": {"height": 0.22}}, "colour": {"wood": {"rgba": (0.72, 0.55, 0.36, 1.0)}, "white": {"rgba": SOLID_RGBA["white"]}}}),
]}


def variants(family: str | None = None) -> list[Variant]:
    """Every variant of the library (or of one family), in a stable order."""
    out = []
    for fam in FAMILIES.values():
        if family is not None and fam.name != family:
            continue
        axes = list(fam.grid.items())
        for combo in itertools.product(*[list(values.items()) for _, values in axes]):
            kwargs, names = {}, []
            for value_name, kw in combo:
                kwargs.update(kw)
                names.append(value_name)
            material = next((n for (a, _), (n, _) in zip(axes, combo) if a == "material"), "")
            for fill in fam.fills:
                tail = [f"fill{round(fill * 100)}"] if fam.fillable else []
                out.append(Variant(fam, f"{fam.name}/{'-'.join(names + tail)}", kwargs, fill, material))
    return out


def variant(variant_id: str) -> Variant:
    """One variant by id (KeyError names the family's ids when it does not exist)."""
    family = variant_id.split("/")[0]
    found = {v.id: v for v in variants(family)}
    if variant_id not in found:
        raise KeyError(f"unknown variant {variant_id!r}; {family} has {', '.join(list(found)[:6]) or 'no variants'}...")
    return found[variant_id]


def for_object(obj) -> Variant:
    """The variant a workflow `ObjectSpec` asks for: its type, size, colour and fill (ad hoc when off the grid)."""
    fam = FAMILIES[obj.type]
    kwargs: dict = {}
    if obj.type == "beaker":
        r, h = BEAKER_SIZES[obj.size]
        kwargs = {"radius": r, "height": h}
    if obj.type in ("beaker", "flask", "graduated_cylinder", "test_tube"):
        kwargs["rgba"] = GLASS_RGBA[obj.color]
    elif obj.type == "button_panel":
        kwargs["rgba"] = GLASS_RGBA[obj.color] if obj.color != "clear" else (0.1, 0.55, 0.15, 1)
    elif obj.type == "target_zone":
        kwargs["rgba"] = GLASS_RGBA[obj.color] if obj.color != "clear" else (0.1, 0.7, 0.2, 0.6)
    fill = obj.contents.liquid if obj.contents is not None else 0.0
    return Variant(fam, f"{obj.type}/{obj.size}-{obj.color}" + (f"-fill{round(fill * 100)}" if fill else ""),
                   kwargs, fill)


def particle_count(fill: float) -> int:
    """Liquid particles for a fill fraction (at least 4, so a poured amount is measurable)."""
    return max(4, round(fill * MAX_PARTICLES))


def build(builder, v: Variant, name: str, xy, yaw: float = 0.0, rgba=None, material: str | None = None, z: float = 0.0):
    """Add variant `v` as `name` at (x, y) on the bench, or at height `z` (on a shelf), with its liquid when filled;
    returns its `Asset`."""
    kwargs = dict(v.kwargs)
    if rgba is not None:
        kwargs["rgba"] = tuple(rgba)
    if v.family.yaw and yaw:
        kwargs["yaw"] = yaw
    asset = builder.add(v.family.builder, name, [float(xy[0]), float(xy[1]), float(z)], **kwargs)
    if material or v.material:
        asset.material = material or v.material
    if v.fill > 0 and v.family.name in ("beaker", "graduated_cylinder", "flask", "test_tube"):
        inner = asset.params["radius"] - asset.params.get("wall", 0.004)
        builder.add(A.particles, f"{name}_liquid", [float(xy[0]), float(xy[1]), 0.004], inner,
                    count=particle_count(v.fill))
    return asset
