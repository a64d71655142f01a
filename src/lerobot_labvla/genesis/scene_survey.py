"""`labvla-genesis scenes --n N`: build N random scenes and report each validation check's pass rate.

Each scene is a random task recipe (pick-and-place onto a zone, heat on a hot plate, pour between
beakers, open/close the oven, press a panel, stir) with random variants at random nominal spots,
laid out by the scene builder under a randomization preset. The first layout of every scene is
judged by all ten checks (so each check's rate is measured on the same draws); `valid` is the share
of scenes that have a valid layout within `LAYOUT_TRIES` draws, as generation would retry them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np

from lerobot_labvla.genesis import scene_builder as SB
from lerobot_labvla.genesis.axes import resolve
from lerobot_labvla.genesis.workflow import Workflow

RECIPES = ("pick_place", "heat", "pour", "oven", "panel", "stir")


def _spot(rng: np.random.Generator) -> list[float]:
    return [round(float(rng.uniform(0.4, 0.7)), 3), round(float(rng.uniform(-0.4, 0.4)), 3)]


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def random_workflow(rng: np.random.Generator) -> Workflow:
    """A random valid workflow of one of `RECIPES` (objects of random sizes/colours at random spots)."""
    recipe = _pick(rng, RECIPES)
    size, colour = _pick(rng, ("small", "medium", "large")), _pick(rng, ("clear", "blue", "green", "amber", "pink"))
    beaker = {"name": "beaker_a", "type": "beaker", "size": size, "color": colour, "at": _spot(rng)}
    if recipe == "pick_place":
        objects = [beaker, {"name": "zone", "type": "target_zone", "at": _spot(rng)}]
        steps = [{"pick": {"object": "beaker_a"}}, {"place": {"object": "beaker_a", "on": "zone"}}]
    elif recipe == "heat":
        objects = [dict(beaker, contents={"liquid": 0.5}), {"name": "hot_plate", "type": "hot_plate", "at": _spot(rng)}]
        steps = [{"pick": {"object": "beaker_a"}}, {"place": {"object": "beaker_a", "on": "hot_plate"}},
                 {"press": {"target": "hot_plate.button"}}]
    elif recipe == "pour":
        objects = [dict(beaker, size="small", contents={"liquid": float(rng.uniform(0.3, 1.0))}),
                   {"name": "beaker_b", "type": "beaker", "size": "large", "at": _spot(rng)}]
        steps = [{"pick": {"object": "beaker_a"}}, {"pour": {"from": "beaker_a", "to": "beaker_b"}},
                 {"place": {"object": "beaker_a", "at": objects[0]["at"]}}]
    elif recipe == "oven":
        objects = [{"name": "oven", "type": "cabinet", "at": [round(float(rng.uniform(0.62, 0.75)), 3),
                                                              round(float(rng.uniform(-0.25, 0.25)), 3)]}, beaker]
        steps = [{"open": {"target": "oven.door"}}, {"close": {"target": "oven.door"}}]
    elif recipe == "panel":
        objects = [{"name": "panel", "type": "button_panel", "at": _spot(rng)}, beaker]
        steps = [{"press": {"target": "panel.button"}}]
    else:
        objects = [dict(beaker, contents={"liquid": 0.5}), {"name": "rod", "type": "stirring_rod", "at": _spot(rng)}]
        steps = [{"pick": {"object": "rod"}}, {"stir": {"object": "beaker_a", "with": "rod"}}]
    return Workflow.model_validate({"name": f"survey_{recipe}", "instruction": recipe.replace("_", " "),
                                    "scene": {"objects": objects, "jitter": 0.03}, "steps": steps})


def survey(n: int, seed: int = 0, preset: str = "full", progress: bool = True) -> dict:
    """Build and validate `n` random scenes; per-check pass rates, valid-within-retries rate, timings."""
    from tqdm import tqdm

    from lerobot_labvla.envs.labutopia.splits import get_split
    from lerobot_labvla.genesis.randomize import LAYOUT_TRIES, STREAMS, camera_poses, layouts

    rz, split = resolve(preset), get_split("id")
    failed: Counter = Counter()
    examples: dict[str, str] = {}
    valid, first_ok, recipes = 0, 0, Counter()
    t0 = time.perf_counter()
    for i in tqdm(range(n), desc=f"scenes ({preset})", disable=not progress, unit="scene"):
        rng = np.random.default_rng([seed, i])
        wf = random_workflow(rng)
        recipes[wf.name.removeprefix("survey_")] += 1
        streams = dict(zip(STREAMS, np.random.default_rng([seed, i, 1]).spawn(len(STREAMS))))
        cameras = camera_poses(streams["camera"], rz)
        fails = next(layouts(wf, rz, streams, split, cameras, None, tries=1, all_checks=True))[3]
        for c, why in fails.items():  # every check on the first layout: the per-check rates
            failed[c] += 1
            examples.setdefault(c, why)
        first_ok += not fails
        # then as generation does: more layouts from the same streams until one passes
        valid += not fails or any(not f for *_, f in layouts(wf, rz, streams, split, cameras, None, LAYOUT_TRIES - 1))
    wall = time.perf_counter() - t0
    return {"n": n, "seed": seed, "preset": preset, "layout_tries": LAYOUT_TRIES, "recipes": dict(recipes),
            "pass_rate": {c: round(1 - failed[c] / n, 4) for c in SB.CHECKS},
            "first_layout_valid": round(first_ok / n, 4), "valid_within_tries": round(valid / n, 4),
            "example_failures": examples, "seconds": round(wall, 1), "ms_per_scene": round(1000 * wall / n, 1),
            "load_avg": [round(x, 2) for x in os.getloadavg()], "commit": _commit()}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def print_table(report: dict) -> None:
    print(f"{report['n']} scenes, preset {report['preset']}, {report['ms_per_scene']} ms each "
          f"(load {report['load_avg'][0]})")
    print(f"{'check':24s} pass rate  example failure")
    for c, rate in report["pass_rate"].items():
        print(f"{c:24s} {rate:9.1%}  {report['example_failures'].get(c, '')[:70]}")
    print(f"{'first layout valid':24s} {report['first_layout_valid']:9.1%}")
    print(f"{'valid in ' + str(report['layout_tries']) + ' layouts':24s} {report['valid_within_tries']:9.1%}")


def write_json(report: dict, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, path)
