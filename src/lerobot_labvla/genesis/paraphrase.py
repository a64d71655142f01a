"""Instruction paraphrasing: the workflow's own wordings, rewritten by templates and synonym tables.

Deterministic per seed. Only verbs, connectives and generic nouns change: object words that name
something in the scene (types, sizes, colours, snake_case names) and numbers are never touched, so
a paraphrase asks for the same thing.
"""

from __future__ import annotations

import re

import numpy as np

# Phrase -> interchangeable phrases (each row is symmetric: any member may become any other).
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("pick up", "lift", "grab"),
    ("put", "place", "set"),
    ("put down", "set down", "lay down"),
    ("pour", "decant"),
    ("press", "push"),
    ("switch on", "turn on"),
    ("switch off", "turn off"),
    ("open", "swing open"),
    ("close", "shut"),
    ("carry", "move", "bring"),
    ("stir", "mix"),
    ("shake", "agitate"),
    ("liquid", "solution"),
    ("hot plate", "heating plate", "hotplate"),
    ("oven", "drying oven"),
    ("then", "and then", "after that"),
    ("bench", "table", "workbench"),
)
TEMPLATES: tuple[str, ...] = (
    "{i}",
    "please {i}",
    "{i}, please",
    "your task: {i}",
    "now {i}",
    "{i} carefully",
    "robot, {i}",
    "I need you to {i}",
)
_WORD = re.compile(r"[a-z][a-z']*")


def _table() -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for row in SYNONYMS:
        for phrase in row:
            out[phrase] = row
    return out


TABLE = _table()
# Longest phrases first, so "pick up" wins over "pick" and "put down" over "put".
_PHRASES = re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(TABLE, key=len, reverse=True)) + r")\b")


def swap_synonyms(text: str, rng: np.random.Generator, protected: set[str] = frozenset()) -> str:
    """Each synonym-table phrase in `text` replaced by a member of its row (drawn from `rng`)."""

    def sub(m: re.Match) -> str:
        phrase = m.group(1)
        if set(phrase.split()) & protected:
            return phrase
        row = TABLE[phrase]
        return row[int(rng.integers(len(row)))]

    return _PHRASES.sub(sub, text)


def paraphrase(instruction: str, rng: np.random.Generator, wordings: list[str] = (), protected: set[str] = frozenset()) -> str:
    """One wording of the instruction: a workflow wording, its synonyms swapped, in a template (lower case)."""
    options = [instruction, *wordings]
    base = " ".join(options[int(rng.integers(len(options)))].strip().rstrip(".").split())
    base = base[:1].lower() + base[1:]
    text = swap_synonyms(base, rng, protected)
    return TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(i=text)


def protected_words(workflow) -> set[str]:
    """Words that name scene things in a workflow (object names and their parts, types, sizes, colours)."""
    words: set[str] = set()
    for o in workflow.scene.objects:
        words |= set(o.name.split("_")) | set(o.type.split("_")) | {o.size, o.color}
    return {w for w in words if w and w not in TABLE}
