"""Written lab protocols -> workflows: a deterministic offline parser, and optionally a local LLM.

The parser knows common protocol phrasing: verbs ("take", "pour", "put ... on", "press", "open",
"stir", "shake"), objects with sizes, colours and ordinals ("the small beaker", "the second
flask"), pronouns ("it", "its button"), quantities ("half", "30%", "three times") and ordering
words ("then", "after", "before"). Whatever it produces goes through the validator.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.genesis.workflow import CONTAINERS, LoadedWorkflow, parse_workflow

# verb phrase -> skill (longest phrases are matched first)
VERBS: dict[str, str] = {
    "pick up": "pick", "pick": "pick", "take": "pick", "grab": "pick", "grasp": "pick", "lift": "pick", "get": "pick",
    "put": "place", "place": "place", "set": "place", "carry": "place", "bring": "place", "return": "place",
    "move": "place", "transport": "place",
    "pour": "pour", "decant": "pour", "transfer": "pour", "empty": "pour",
    "press down": "pressZ", "push down": "pressZ",
    "press": "press", "push": "press", "switch on": "press", "turn on": "press", "start": "press",
    "open": "open", "close": "close", "shut": "close",
    "stir": "stir", "mix": "stir", "shake": "shake", "agitate": "shake",
}
GERUNDS = {"picking": "pick", "taking": "take", "putting": "put", "placing": "place", "pouring": "pour",
           "pressing": "press", "pushing": "push", "opening": "open", "closing": "close", "stirring": "stir",
           "mixing": "mix", "shaking": "shake", "moving": "move", "carrying": "carry", "switching": "switch",
           "turning": "turn", "setting": "set", "transferring": "transfer", "lifting": "lift", "grabbing": "grab"}
NOUNS: dict[str, str] = {
    "graduated cylinder": "graduated_cylinder", "measuring cylinder": "graduated_cylinder", "cylinder": "graduated_cylinder",
    "test tube": "test_tube", "tube": "test_tube", "reagent bottle": "reagent_bottle", "bottle": "reagent_bottle",
    "hot plate": "hot_plate", "hotplate": "hot_plate", "heater": "hot_plate",
    "drying oven": "cabinet", "oven": "cabinet", "cabinet": "cabinet",
    "button panel": "button_panel", "panel": "button_panel",
    "stirring rod": "stirring_rod", "glass rod": "stirring_rod", "rod": "stirring_rod",
    "target area": "target_zone", "target zone": "target_zone", "zone": "target_zone",
    "beaker": "beaker", "flask": "flask",
}
PART_NOUNS = {"button": "button", "switch": "button", "door": "door"}
SIZES = {"small": "small", "little": "small", "medium": "medium", "large": "large", "big": "large"}
COLORS = ("clear", "blue", "green", "amber", "pink", "red", "yellow", "white", "grey")
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "other": 2}
FRACTIONS = {"half": 0.5, "all": 1.0, "everything": 1.0, "a third": 0.33, "one third": 0.33, "a quarter": 0.25,
             "two thirds": 0.67, "most": 0.8}
COUNTS = {"once": 1, "twice": 2, "three times": 3, "four times": 4, "five times": 5}
FILLER = re.compile(r"^(?:then|first|next|finally|now|please|and|afterwards|after that|lastly)\b\s*")
# Nominal slots (m, robot base frame): glassware in the middle band, devices at the sides.
LAYOUT = [(0.48, 0.06), (0.62, -0.02), (0.38, 0.16), (0.36, -0.06), (0.6, 0.14), (0.5, 0.2)]
DEVICE_LAYOUT = {"hot_plate": [(0.5, -0.26), (0.36, -0.34)], "button_panel": [(0.36, -0.34), (0.5, -0.26)],
                 "cabinet": [(0.72, 0.3)], "target_zone": [(0.46, 0.36), (0.62, 0.3)]}


class ProtocolError(LabVLAError):
    """A protocol sentence the parser cannot turn into a step (names the closest known words)."""


@dataclass
class _Obj:
    name: str
    type: str
    size: str | None = None
    color: str | None = None
    liquid: bool = False
    at: tuple[float, float] | None = None


@dataclass
class _Compiler:
    objects: dict[str, _Obj] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    held: str | None = None
    last: str | None = None  # last object mentioned ("it")
    last_device: str | None = None  # last device mentioned ("its button")

    # --- objects -------------------------------------------------------------------------------
    def noun_phrase(self, text: str, clause: str) -> str:
        """The object name a phrase refers to, creating it in the scene on first mention."""
        words = text.strip().lower()
        words = re.sub(r"^(?:the|a|an|its|their|this|that)\s+", "", words)
        if words in ("it", "them", "this", "that", ""):
            if self.last is None:
                raise ProtocolError(f"{clause!r}: 'it' refers to nothing yet; name the object (e.g. 'the beaker')")
            return self.last
        noun = next((n for n in sorted(NOUNS, key=len, reverse=True) if re.search(rf"\b{n}s?\b", words)), None)
        if noun is None:
            vocab = list(NOUNS)
            last_word = words.split()[-1] if words.split() else words
            near = difflib.get_close_matches(last_word, vocab, n=3, cutoff=0.5) or \
                difflib.get_close_matches(words, vocab, n=3, cutoff=0.3) or vocab[:3]
            raise ProtocolError(f"unknown object {words!r} in {clause!r}; closest known: {', '.join(near)}")
        otype = NOUNS[noun]
        size = next((SIZES[w] for w in SIZES if re.search(rf"\b{w}\b", words)), None)
        color = next((c for c in COLORS if re.search(rf"\b{c}\b", words)), None)
        ordinal = next((ORDINALS[w] for w in ORDINALS if re.search(rf"\b{w}\b", words)), None)
        name = otype if otype != "stirring_rod" else "rod"
        name = {"cabinet": "oven", "graduated_cylinder": "cylinder", "reagent_bottle": "bottle"}.get(otype, name)
        if size or color:
            name = "_".join([name] + [x for x in (size, color) if x])
        if ordinal and ordinal > 1:
            name = f"{name}_{ordinal}"
        elif ordinal == 1 and f"{name}_2" in self.objects:
            pass
        if name not in self.objects:
            same = [o for o in self.objects.values() if o.type == otype]
            if same and not (size or color or ordinal):
                return self._mention(same[-1].name)  # "the beaker" after "the small beaker"
            self.objects[name] = _Obj(name, otype, size, color)
        return self._mention(name)

    def _mention(self, name: str) -> str:
        if self.objects[name].type in ("hot_plate", "button_panel", "cabinet"):
            self.last_device = name
        else:
            self.last = name
        return name

    def device_part(self, text: str, part: str, clause: str) -> str:
        """`hot_plate.button` for 'its button', 'the hot plate button', 'the button of the hot plate'."""
        words = text.lower()
        rest = re.sub(rf"\b(?:{'|'.join(k for k, v in PART_NOUNS.items() if v == part)})\b", " ", words)
        rest = re.sub(r"\b(?:its|the|of|on|a)\b", " ", rest).strip()
        if rest in ("it", "them"):
            rest = ""  # "close it": the device mentioned last
        if rest:
            dev = self.noun_phrase(rest, clause)
        elif self.last_device is not None and (self.objects[self.last_device].type == "cabinet") == (part == "door"):
            dev = self.last_device
        else:
            kinds = {"door": ("cabinet",), "button": ("hot_plate", "button_panel")}[part]
            devs = [o.name for o in self.objects.values() if o.type in kinds]
            if len(devs) != 1:
                raise ProtocolError(f"{clause!r}: which {part}? name its device (e.g. 'the hot plate's {part}')")
            dev = devs[0]
        self.last_device = dev
        return f"{dev}.{part}"

    # --- steps ---------------------------------------------------------------------------------
    def ensure_held(self, obj: str, clause: str) -> None:
        if self.held == obj:
            return
        if self.held is not None:
            self.put_back(self.held)
        self.steps.append({"pick": {"object": obj}, "instruction": f"pick up the {_words(obj)}"})
        self.held = obj

    def put_back(self, obj: str) -> None:
        self.steps.append({"place": {"object": obj, "at": "__home__" + obj},
                           "instruction": f"put the {_words(obj)} back"})
        self.held = None

    def free_hand(self) -> None:
        if self.held is not None:
            self.put_back(self.held)

    def clause(self, text: str) -> None:
        c = FILLER.sub("", text.strip().lower().rstrip("."))
        c = FILLER.sub("", c)
        if not c:
            return
        for g, base in GERUNDS.items():
            c = re.sub(rf"^{g}\b", base, c)
        verb = next((v for v in sorted(VERBS, key=len, reverse=True) if re.match(rf"{v}\b", c)), None)
        if verb is None:
            first = c.split()[0]
            near = difflib.get_close_matches(first, list(VERBS), n=3, cutoff=0.5) or sorted(set(VERBS.values()))
            raise ProtocolError(f"unknown verb {first!r} in {text.strip()!r}; closest known: {', '.join(near)}")
        skill, rest = VERBS[verb], c[len(verb):].strip()
        amount = next((v for k, v in sorted(FRACTIONS.items(), key=lambda kv: -len(kv[0])) if re.search(rf"\b{k}\b", rest)), None)
        pct = re.search(r"(\d+(?:\.\d+)?)\s*(?:%|percent)", rest)
        if pct:
            amount = float(pct.group(1)) / 100
        count = next((v for k, v in COUNTS.items() if re.search(rf"\b{k}\b", rest)), None)
        n_times = re.search(r"(\d+)\s*times", rest)
        if n_times:
            count = int(n_times.group(1))
        rest = re.sub(r"\b(?:\d+(?:\.\d+)?\s*(?:%|percent)|\d+\s*times|once|twice|three times|four times|five times)\b", " ", rest)
        rest = re.sub(r"\b(?:half|all|everything|a third|one third|a quarter|two thirds|most)\b(?:\s+of)?", " ", rest)
        rest = re.sub(r"\b(?:up|down|gently|carefully|slowly|well|briefly|thoroughly)\b", " ", rest).strip()
        obj_text, prep, target_text = _split_prep(rest)
        instr = text.strip().rstrip(".")
        if skill == "pick":
            obj = self.noun_phrase(obj_text, instr)
            self.ensure_held(obj, instr)
            self.steps[-1]["instruction"] = instr
        elif skill == "place":
            obj = self.noun_phrase(obj_text, instr)
            if not target_text:
                raise ProtocolError(f"{instr!r}: where to? add 'on the hot plate' / 'in the target area'")
            self.ensure_held(obj, instr)
            target = self.noun_phrase(target_text, instr)
            self.steps.append({"place": {"object": obj, "on": target}, "instruction": instr})
            self.held, self.last = None, obj
        elif skill == "pour":
            src = self.noun_phrase(obj_text, instr) if obj_text else self.held
            if src is None:
                raise ProtocolError(f"{instr!r}: pour from what? name the container (e.g. 'pour the beaker into the flask')")
            if not target_text:
                raise ProtocolError(f"{instr!r}: pour into what? add 'into the flask'")
            dst = self.noun_phrase(target_text, instr)
            self.objects[src].liquid = True
            self.ensure_held(src, instr)
            self.steps.append({"pour": {"from": src, "to": dst, "amount": amount or 1.0}, "instruction": instr})
            self.last = src
        elif skill in ("press", "pressZ"):
            target = self.device_part(rest, "button", instr)
            self.free_hand()
            self.steps.append({skill: {"target": target}, "instruction": instr})
        elif skill in ("open", "close"):
            target = self.device_part(rest, "door", instr)
            self.free_hand()
            self.steps.append({skill: {"target": target}, "instruction": instr})
        elif skill == "stir":
            vessel = self.noun_phrase(obj_text, instr) if obj_text else self.last
            rod = self.noun_phrase(target_text, instr) if prep == "with" else self.noun_phrase("rod", instr)
            self.ensure_held(rod, instr)
            self.steps.append({"stir": {"object": vessel, "with": rod, "turns": count or 2}, "instruction": instr})
            self.last = vessel
        elif skill == "shake":
            obj = self.noun_phrase(obj_text, instr) if obj_text else self.last
            self.ensure_held(obj, instr)
            self.steps.append({"shake": {"object": obj, "count": count or 3}, "instruction": instr})

    def scene(self) -> list[dict]:
        out, used = [], set()
        for o in self.objects.values():
            free = [xy for xy in DEVICE_LAYOUT.get(o.type, LAYOUT) if xy not in used]
            if not free:
                raise ProtocolError(f"the protocol names too many objects of type {o.type}; the bench layout holds "
                                    f"{len(DEVICE_LAYOUT.get(o.type, LAYOUT))}; fix: write the workflow YAML by hand")
            o.at = free[0]
            used.add(o.at)
        for o in self.objects.values():
            spec = {"name": o.name, "type": o.type, "at": list(o.at)}
            if o.size:
                spec["size"] = o.size
            if o.color:
                spec["color"] = o.color
            if o.liquid and o.type in CONTAINERS:
                spec["contents"] = {"liquid": 0.5}
            out.append(spec)
        return out


def _words(name: str) -> str:
    """`beaker_small_2` -> 'small beaker 2' (how a protocol would say it)."""
    parts = name.split("_")
    adjectives = [p for p in parts if p in SIZES or p in COLORS]
    rest = [p for p in parts if p not in adjectives]
    return " ".join(adjectives + rest)


def _split_prep(rest: str) -> tuple[str, str, str]:
    m = re.search(r"\b(onto|into|on top of|on|in|inside|to|over|with)\b", rest)
    if not m:
        return rest, "", ""
    return rest[: m.start()].strip(), m.group(1), rest[m.end():].strip()


def _clauses(text: str) -> list[str]:
    """Protocol text -> clauses in execution order ("A after B" -> B, A; "before A, B" -> B, A)."""
    out = []
    for sentence in re.split(r"(?<=[.;!])\s+|\n+", text.strip()):
        s = sentence.strip().rstrip(".;!")
        if not s:
            continue
        m = re.match(r"^(before|after)\s+([^,]+),\s*(.+)$", s, re.I)
        if m:
            first, second = (m.group(3), m.group(2)) if m.group(1).lower() == "before" else (m.group(2), m.group(3))
            out += _split(first) + _split(second)
            continue
        m = re.match(r"^(.+?)\s+(before|after)\s+(.+)$", s, re.I)
        if m and not re.search(r"\b(?:before|after)\b", m.group(1), re.I):
            a, b = m.group(1), m.group(3)
            out += (_split(a) + _split(b)) if m.group(2).lower() == "before" else (_split(b) + _split(a))
            continue
        out += _split(s)
    return out


def _split(s: str) -> list[str]:
    parts = re.split(r",\s*(?:and\s+)?(?:then\s+)?|\s+and\s+then\s+|\s+then\s+|\s+and\s+(?=(?:%s)\b)" %
                     "|".join(sorted({*VERBS, *GERUNDS}, key=len, reverse=True)), s, flags=re.I)
    return [p.strip() for p in parts if p and p.strip()]


def compile_protocol(text: str, name: str = "compiled_protocol") -> str:
    """A validated workflow YAML for `text` (raises `ProtocolError`/`WorkflowError` with one line)."""
    import yaml

    comp = _Compiler()
    clauses = _clauses(text)
    if not clauses:
        raise ProtocolError("empty protocol; write steps such as 'take the beaker and put it on the hot plate'")
    for c in clauses:
        comp.clause(c)
    objects = comp.scene()
    homes = {o["name"]: o["at"] for o in objects}
    for step in comp.steps:
        place = step.get("place")
        if place and isinstance(place.get("at"), str):
            place["at"] = list(homes[place["at"].removeprefix("__home__")])
    wf = {"name": name, "instruction": " ".join(text.split()), "scene": {"objects": objects}, "steps": comp.steps}
    out = yaml.safe_dump(wf, sort_keys=False, default_flow_style=None, width=110)
    check_compiled(out)
    return out


def check_compiled(yaml_text: str, file: str = "<compiled>") -> LoadedWorkflow:
    """Parse + validate a generated workflow; the first error becomes a `ProtocolError`."""
    from lerobot_labvla.genesis.validate import validate

    loaded = parse_workflow(yaml_text, file)
    errors = [i for i in validate(loaded) if i.severity == "error"]
    if errors:
        raise ProtocolError(f"the compiled workflow is invalid: {errors[0].message}; fix: {errors[0].hint}")
    return loaded


PROMPT = """Convert the lab protocol into a RoboGenesis workflow in YAML. Skills: pick, place, pour, press, pressZ,
open, close, move, stir, shake. Object types: beaker, flask, graduated_cylinder, test_tube, reagent_bottle,
stirring_rod, hot_plate, button_panel, cabinet, target_zone. Answer with YAML only.

Protocol: take the beaker and put it on the hot plate, then press its button
YAML:
{example}
Protocol: {protocol}
YAML:
"""


def compile_with_llm(text: str, model_dir: str | Path, name: str = "compiled_protocol", max_new_tokens: int = 768) -> str:
    """Ask a local instruction-tuned causal LM (a directory, never the Hub) for the workflow; validated."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise LabVLAError(f"--llm {str(model_dir)!r} is not a model directory (no config.json); "
                          "fix: pass a local transformers checkpoint folder")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
    prompt = PROMPT.format(example=compile_protocol("take the beaker and put it on the hot plate, then press its button",
                                                    "example"), protocol=" ".join(text.split()))
    if getattr(tok, "chat_template", None):
        prompt = tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False)
    answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    fenced = re.search(r"```(?:yaml)?\s*(.*?)```", answer, re.S)
    answer = (fenced.group(1) if fenced else answer).strip()
    try:
        check_compiled(answer, "<llm>")
    except LabVLAError as exc:
        raise ProtocolError(f"the model in {model_dir} answered an invalid workflow ({exc}); "
                            "fix: use the offline parser (drop --llm) or a stronger model") from None
    return answer + "\n"
