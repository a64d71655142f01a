"""The RoboGenesis workflow: a YAML file of scene + robot + atomic-skill steps, as pydantic models.

`load_workflow(path)` parses the YAML and checks the schema; every error keeps the file:line:column
of the node it is about, so `labvla-genesis validate` can point at it (see genesis/validate.py).

    name: heat_beaker
    instruction: place the beaker on the hot plate and turn it on
    scene:
      objects:
        - {name: beaker_small, type: beaker, size: small, at: [0.5, 0.15], contents: {liquid: 0.5}}
        - {name: hot_plate, type: hot_plate, at: [0.5, -0.2]}
    steps:
      - pick: {object: beaker_small}
      - place: {object: beaker_small, on: hot_plate}
      - press: {target: hot_plate.button}
        instruction: switch the hot plate on
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.genesis.axes import Randomization

LABUTOPIA_TASKS = ("pick_up", "press_button", "open_door", "pour_liquid", "heat_beaker", "transport_beaker")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Object types a workflow can place, with what they are for the validator.
CONTAINERS = {"beaker", "flask", "graduated_cylinder", "test_tube"}
GRASPABLE = CONTAINERS | {"reagent_bottle", "bottle", "stirring_rod"}
BUTTON_DEVICES = {"hot_plate", "button_panel"}
DOOR_DEVICES = {"cabinet"}
SURFACES = {"hot_plate", "target_zone", "bench"}
OBJECT_TYPES = tuple(sorted(GRASPABLE - {"bottle"} | BUTTON_DEVICES | DOOR_DEVICES | {"target_zone"}))
SIZES = ("small", "medium", "large")
COLORS = ("clear", "blue", "green", "amber", "pink", "red", "yellow", "white", "grey")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Contents(_Strict):
    liquid: float = Field(0.5, gt=0.0, le=1.0, description="fill fraction of the container (0, 1]")


class ObjectSpec(_Strict):
    """One object on the bench; `at` is its nominal (x, y) in metres in the robot base frame."""

    name: str
    type: str
    at: tuple[float, float]
    size: Literal["small", "medium", "large"] = "medium"
    color: str = "clear"
    contents: Contents | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"object name {v!r} must be lower_snake_case (a-z, 0-9, _), e.g. beaker_small")
        return v

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v not in OBJECT_TYPES:
            raise ValueError(f"unknown object type {v!r}; expected one of {', '.join(OBJECT_TYPES)}")
        return v

    @field_validator("color")
    @classmethod
    def _color(cls, v: str) -> str:
        if v not in COLORS:
            raise ValueError(f"unknown colour {v!r}; expected one of {', '.join(COLORS)}")
        return v


class Scene(_Strict):
    """Either a LabUtopia task's own scene (`labutopia: heat_beaker`, id split) or explicit objects."""

    labutopia: Literal["pick_up", "press_button", "open_door", "pour_liquid", "heat_beaker", "transport_beaker"] | None = None
    objects: list[ObjectSpec] = Field(default_factory=list)
    jitter: float = Field(0.03, ge=0.0, le=0.08, description="uniform +- jitter of every object's x and y (m)")

    @model_validator(mode="after")
    def _one_source(self) -> Scene:
        if self.labutopia is None and not self.objects:
            raise ValueError("a scene needs `objects:` (a list) or `labutopia: <task>`")
        if self.labutopia is not None and self.objects:
            raise ValueError("`labutopia:` scenes are fixed by the benchmark; remove `objects:` or `labutopia:`")
        return self


# --- step arguments (one model per skill) -------------------------------------------------------
class PickArgs(_Strict):
    object: str


class PlaceArgs(_Strict):
    object: str
    on: str | None = None
    at: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _where(self) -> PlaceArgs:
        if (self.on is None) == (self.at is None):
            raise ValueError("place needs exactly one of `on: <object>` or `at: [x, y]`")
        return self


class PourArgs(_Strict):
    from_: str = Field(alias="from")
    to: str
    amount: float = Field(1.0, gt=0.0, le=1.0, description="fraction of the source's liquid that must arrive")


class PressArgs(_Strict):
    target: str


class PressZArgs(_Strict):
    target: str
    depth: float = Field(0.8, gt=0.0, le=1.0, description="fraction of the button travel to reach")


class DoorArgs(_Strict):
    target: str


class OpenArgs(DoorArgs):
    angle: float = Field(1.25, ge=0.6, le=1.5, description="door angle to reach (rad)")


class MoveArgs(_Strict):
    to: tuple[float, float, float]


class StirArgs(_Strict):
    object: str
    with_: str = Field(alias="with")
    turns: int = Field(2, ge=1, le=6)


class ShakeArgs(_Strict):
    object: str
    amplitude: float = Field(0.03, ge=0.01, le=0.06, description="half stroke (m)")
    count: int = Field(3, ge=1, le=8)


class HandoverArgs(_Strict):
    """Two-arm step (bimanual robots): the step's `arm:` holds `object` and passes it to arm `to` at bench point `at`."""

    object: str
    to: str
    at: tuple[float, float]


SKILL_ARGS: dict[str, type[BaseModel]] = {
    "pick": PickArgs, "place": PlaceArgs, "pour": PourArgs, "press": PressArgs, "pressZ": PressZArgs,
    "open": OpenArgs, "close": DoorArgs, "move": MoveArgs, "stir": StirArgs, "shake": ShakeArgs,
    "handover": HandoverArgs,
}


class Step(_Strict):
    """One atomic skill (exactly one of the skill keys), an optional sub-instruction, and (bimanual) the arm."""

    pick: PickArgs | None = None
    place: PlaceArgs | None = None
    pour: PourArgs | None = None
    press: PressArgs | None = None
    pressZ: PressZArgs | None = None
    open: OpenArgs | None = None
    close: DoorArgs | None = None
    move: MoveArgs | None = None
    stir: StirArgs | None = None
    shake: ShakeArgs | None = None
    handover: HandoverArgs | None = None
    instruction: str | None = None
    arm: str | None = Field(None, description="which arm runs the step (bimanual robots: left / right)")

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            skills = [k for k in data if k in SKILL_ARGS]
            unknown = [k for k in data if k not in SKILL_ARGS and k not in ("instruction", "arm")]
            if unknown:
                raise ValueError(f"unknown skill {unknown[0]!r}; expected one of {', '.join(SKILL_ARGS)}")
            if len(skills) != 1:
                raise ValueError(f"a step names exactly one skill, got {skills or 'none'}; "
                                 f"split it into one step per skill")
        return data

    @property
    def skill(self) -> str:
        return next(k for k in SKILL_ARGS if getattr(self, k) is not None)

    @property
    def args(self) -> BaseModel:
        return getattr(self, self.skill)


class Workflow(_Strict):
    name: str
    instruction: str
    paraphrases: list[str] = Field(default_factory=list, description="other wordings; each episode draws one")
    robot: str = Field("fr3", description="a robot profile (labvla-genesis robots)")
    max_steps: int | None = Field(None, ge=20, le=5000, description="control steps per episode (default: from the steps)")
    randomize: Randomization | None = Field(None, description="a preset (none|light|full) or axis ranges (genesis/axes.py)")
    scene: Scene
    steps: list[Step] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(f"workflow name {v!r} must be lower_snake_case")
        return v

    @field_validator("robot")
    @classmethod
    def _robot(cls, v: str) -> str:
        from lerobot_labvla.sim.robots import profiles  # no MuJoCo: profiles are data until built

        if v not in profiles():
            raise ValueError(f"unknown robot {v!r}; expected one of {', '.join(profiles())} (labvla-genesis robots)")
        return v


# --- YAML with positions ------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: `on:` (place ... on: hot_plate) and `no`/`yes` stay strings, as users mean them."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


@dataclass(frozen=True)
class Location:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class WorkflowError(LabVLAError):
    """A workflow problem at a file position; `str()` is `file:line:col: message; fix: hint`."""

    def __init__(self, where: Location, message: str, hint: str = ""):
        self.where, self.message, self.hint = where, message, hint
        super().__init__(f"{where}: {message}" + (f"; fix: {hint}" if hint else ""))


@dataclass
class LoadedWorkflow:
    """A schema-valid workflow plus where each of its YAML nodes sits (path tuple -> Location)."""

    workflow: Workflow
    file: str
    positions: dict[tuple, Location]

    def where(self, *path) -> Location:
        """The closest located node on `path` (falls back to shorter prefixes, then the file start)."""
        path = tuple(path)
        while path and path not in self.positions:
            path = path[:-1]
        return self.positions.get(path, Location(self.file, 1, 1))


def _positions(node: yaml.Node, file: str, path: tuple = (), out: dict | None = None) -> dict[tuple, Location]:
    out = {} if out is None else out
    out.setdefault(path, Location(file, node.start_mark.line + 1, node.start_mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = path + (key.value,)
            # Point at a scalar's value (the thing to fix), at the key of a block.
            mark = value.start_mark if isinstance(value, yaml.ScalarNode) else key.start_mark
            out[sub] = Location(file, mark.line + 1, mark.column + 1)
            _positions(value, file, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _positions(item, file, path + (i,), out)
    return out


_HINTS = {
    "missing": "add the field",
    "extra_forbidden": "remove it or check its spelling",
    "literal_error": "use one of the listed values",
    "too_short": "add at least one item",
}


def _pydantic_hint(err: dict) -> str:
    return _HINTS.get(err["type"], "see the schema in README.md (RoboGenesis)")


def parse_workflow(text: str, file: str = "<string>") -> LoadedWorkflow:
    """Parse and schema-check a workflow; raises `WorkflowError` at the first problem's position."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        raise WorkflowError(where, f"YAML syntax: {exc.problem or exc}", "fix the indentation or quoting there") from None
    except yaml.YAMLError as exc:  # e.g. control characters (ReaderError has no problem_mark)
        raise WorkflowError(Location(file, 1, 1), f"not YAML text: {' '.join(str(exc).split())}",
                            "save the workflow as plain UTF-8 text") from None
    if node is None or not isinstance(data, dict):
        raise WorkflowError(Location(file, 1, 1), "a workflow is a YAML mapping with name, instruction, scene, steps",
                            "start from an example in examples/workflows/")
    positions = _positions(node, file)
    try:
        wf = Workflow.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.endswith("Args")))
        loc = tuple("from" if p == "from_" else "with" if p == "with_" else p for p in loc)
        msg = err["msg"].removeprefix("Value error, ")
        name = ".".join(str(p) for p in loc) or "workflow"
        raise WorkflowError(LoadedWorkflow(None, file, positions).where(*loc), f"{name}: {msg}",  # type: ignore[arg-type]
                            _pydantic_hint(err)) from None
    return LoadedWorkflow(wf, file, positions)


def load_workflow(path: str | Path) -> LoadedWorkflow:
    """Read `path` and parse it (`WorkflowError` for schema problems, FileNotFoundError if absent)."""
    path = Path(path)
    if not path.is_file():
        raise LabVLAError(f"workflow file {str(path)!r} not found; fix: pass the path of a .yaml workflow")
    return parse_workflow(path.read_text(), str(path))
