"""Instruction paraphrasing: deterministic per seed, varied across seeds, and never touching the words that
name scene things (objects, sizes, colours) or numbers."""

from __future__ import annotations

import re

import numpy as np
from genesis_helpers import EXAMPLES

from lerobot_labvla.genesis.paraphrase import SYNONYMS, TABLE, TEMPLATES, paraphrase, protected_words, swap_synonyms
from lerobot_labvla.genesis.workflow import load_workflow


def test_each_phrase_has_one_synonym_row():
    phrases = [p for row in SYNONYMS for p in row]
    assert len(phrases) == len(set(phrases)) == len(TABLE)
    assert all(len(row) >= 2 for row in SYNONYMS)


def test_deterministic_per_seed_and_varied_across_seeds():
    text = "pick up the small beaker, then pour the liquid into the wide beaker and press the button"
    a = [paraphrase(text, np.random.default_rng(s)) for s in range(30)]
    b = [paraphrase(text, np.random.default_rng(s)) for s in range(30)]
    assert a == b
    assert len(set(a)) >= 10


def _content(text: str) -> list[str]:
    """The words outside the synonym table and templates, in order (what must survive)."""
    glue = {w for t in TEMPLATES for w in re.findall(r"[a-z']+", t.lower())}
    for phrase in sorted(TABLE, key=len, reverse=True):
        text = re.sub(rf"\b{re.escape(phrase)}\b", " ", text)
    return [w for w in re.findall(r"[a-z0-9_.']+", text) if w not in glue]


def test_swaps_keep_object_words_numbers_and_order():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        wf = load_workflow(path).workflow
        protected = protected_words(wf)
        texts = [wf.instruction, *wf.paraphrases, *[s.instruction for s in wf.steps if s.instruction]]
        for text in texts:
            text = text.lower() + " at 0.5 m, 3 times"
            for seed in range(8):
                out = swap_synonyms(text, np.random.default_rng(seed), protected)
                assert _content(out) == _content(text), (path.name, text, out)
                for w in protected & set(text.split()):
                    assert w in out.split(), (w, out)


def test_protected_phrases_are_not_swapped():
    rng = np.random.default_rng(0)
    # `hot plate` names a scene object here: it must stay, while `press` may change.
    outs = {swap_synonyms("press the hot plate button", np.random.default_rng(s), {"hot", "plate"}) for s in range(20)}
    assert all("hot plate" in o for o in outs) and len(outs) > 1
    assert swap_synonyms("place the beaker", rng, set()) in {"put the beaker", "place the beaker", "set the beaker"}
