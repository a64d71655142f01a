"""Workflow schema, validator and protocol compiler: errors point at file:line:column and say the fix."""

from __future__ import annotations

import pytest
import yaml

from genesis_helpers import EXAMPLES, run_cli, run_main, write
from lerobot_labvla.genesis.protocol import ProtocolError, compile_protocol
from lerobot_labvla.genesis.validate import validate
from lerobot_labvla.genesis.workflow import WorkflowError, load_workflow, parse_workflow

HEAD = "name: t\ninstruction: test\n"
SCENE = """scene:
  objects:
    - {name: beaker, type: beaker, at: [0.5, 0.1], contents: {liquid: 0.5}}
    - {name: flask, type: flask, at: [0.5, -0.1]}
    - {name: hot_plate, type: hot_plate, at: [0.45, 0.32]}
    - {name: oven, type: cabinet, at: [0.72, -0.3]}
"""


def issues(steps: str, scene: str = SCENE):
    return validate(parse_workflow(HEAD + scene + "steps:\n" + steps, "wf.yaml"))


def test_every_example_is_valid_and_all_skills_and_tasks_are_covered():
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 12
    skills, tasks = set(), set()
    for f in files:
        loaded = load_workflow(f)
        assert [str(i) for i in validate(loaded) if i.severity == "error"] == [], f
        skills |= {s.skill for s in loaded.workflow.steps}
        tasks.add(loaded.workflow.scene.labutopia)
    assert skills == {"pick", "place", "pour", "press", "pressZ", "open", "close", "move", "stir", "shake"}
    assert tasks >= {"pick_up", "press_button", "open_door", "pour_liquid", "heat_beaker", "transport_beaker"}


@pytest.mark.parametrize("text, where, words", [
    ("name: t\ninstruction: x\nscene:\n  objects:\n    - {name: b, type: beakr, at: [0.5, 0]}\nsteps:\n  - pick: {object: b}\n",
     "wf.yaml:5:23", "unknown object type 'beakr'"),
    (HEAD + SCENE + "steps:\n  - pik: {object: beaker}\n", "wf.yaml:10:5", "unknown skill 'pik'"),
    (HEAD + SCENE + "steps:\n  - pour: {from: beaker, to: flask, amount: 2}\n", "wf.yaml:10:45", "less than or equal to 1"),
    (HEAD + SCENE + "steps:\n  - pick: {object: beaker}\n    pour: {from: beaker, to: flask}\n", "wf.yaml:10:5", "exactly one skill"),
    ("name: t\ninstruction: [unclosed\n", "wf.yaml:3:1", "YAML syntax"),
])
def test_schema_errors_name_the_position(text, where, words):
    with pytest.raises(WorkflowError) as exc:
        parse_workflow(text, "wf.yaml")
    assert str(exc.value).startswith(where + ":"), str(exc.value)
    assert words in str(exc.value)
    assert "; fix: " in str(exc.value)


def test_validator_preconditions_references_and_reach():
    found = issues("""  - pour: {from: beaker, to: flask}
  - pick: {object: beakr}
  - pick: {object: beaker}
  - pick: {object: flask}
  - place: {object: beaker, on: oven}
  - press: {target: hot_plate.button}
""")
    text = [str(i) for i in found]
    assert any(t.startswith("wf.yaml:10:5: error: step 1 (pour): 'beaker' is not held") for t in text), text
    assert any("unknown object 'beakr'" in t and "fix: use one of the scene's objects: beaker" in t for t in text), text
    assert any(t.startswith("wf.yaml:13:5:") and "hand still holds 'beaker'" in t for t in text), text
    assert any("oven is closed; cannot place into it" in t and "open: {target: oven.door}" in t for t in text), text
    assert any("step 6 (press): the hand still holds 'beaker'" in t for t in text), text
    # A correct plan for the same scene has no errors.
    ok = issues("""  - pick: {object: beaker}
  - pour: {from: beaker, to: flask, amount: 0.5}
  - place: {object: beaker, on: hot_plate}
  - open: {target: oven.door}
  - close: {target: oven.door}
  - press: {target: hot_plate.button}
""")
    assert [str(i) for i in ok] == []


def test_validator_reach_spacing_and_repick_risks():
    scene = """scene:
  objects:
    - {name: far, type: beaker, at: [0.95, 0.0]}
    - {name: a, type: beaker, at: [0.5, 0.1]}
    - {name: b, type: beaker, at: [0.52, 0.12]}
    - {name: hot_plate, type: hot_plate, at: [0.45, -0.3]}
"""
    found = [str(i) for i in issues("""  - pick: {object: a}
  - place: {object: a, on: hot_plate}
  - press: {target: hot_plate.button}
  - pick: {object: a}
  - place: {object: a, at: [0.5, 0.9]}
""", scene)]
    assert any("far at (0.95, 0.0) is 0.95 m from the fr3 base, outside its reach" in t for t in found), found
    assert any("b stands 3 cm from a" in t for t in found), found
    assert any("re-pick risk: a stands on hot_plate, which is switched on" in t for t in found), found
    assert any("(0.5, 0.9) is outside the reach" in t for t in found), found
    warn = [str(i) for i in issues("""  - pick: {object: beaker}
  - place: {object: beaker, on: hot_plate}
  - pick: {object: beaker}
  - place: {object: beaker, at: [0.5, 0.1]}
""")]
    assert len(warn) == 1 and ": warning: step 3 (pick): re-pick risk" in warn[0], warn


def test_labutopia_scene_objects_come_from_the_task():
    found = [str(i) for i in validate(parse_workflow(
        HEAD + "scene: {labutopia: heat_beaker}\nsteps:\n  - pick: {object: beeker}\n", "wf.yaml"))]
    assert len(found) == 1 and "unknown object 'beeker'" in found[0] and "beaker" in found[0].split("fix:")[1]


def test_validate_cli_exit_codes_and_one_line_errors(tmp_path, capsys):
    good = run_cli("labvla-genesis", "validate", str(EXAMPLES / "heat_beaker_custom.yaml"))  # the console script
    assert good.returncode == 0 and "ok" in good.stdout
    bad = write(tmp_path, HEAD + SCENE + "steps:\n  - place: {object: beaker, on: hot_plate}\n")
    code, _, err = run_main(capsys, "validate", str(bad))
    assert code == 2
    assert err.strip().splitlines() == [
        f"{bad}:10:5: error: step 1 (place): 'beaker' is not in the hand (the hand is empty); "
        "fix: add `- pick: {object: beaker}` before step 1"]
    broken = write(tmp_path, "name: t\n  instruction: [", "broken.yaml")
    code, _, err = run_main(capsys, "validate", str(broken))
    assert code == 2 and "Traceback" not in err and f"{broken}:2:" in err


def test_compile_the_issue_protocol():
    text = "Take the small beaker, pour half into the flask, put the flask on the hot plate and press its button"
    wf = yaml.safe_load(compile_protocol(text))
    steps = [(next(k for k in s if k != "instruction"), s[next(k for k in s if k != "instruction")]) for s in wf["steps"]]
    assert steps == [
        ("pick", {"object": "beaker_small"}),
        ("pour", {"from": "beaker_small", "to": "flask", "amount": 0.5}),
        ("place", {"object": "beaker_small", "at": [0.48, 0.06]}),  # the hand must be free to take the flask
        ("pick", {"object": "flask"}),
        ("place", {"object": "flask", "on": "hot_plate"}),
        ("press", {"target": "hot_plate.button"}),
    ]
    objects = {o["name"]: o for o in wf["scene"]["objects"]}
    assert objects["beaker_small"]["size"] == "small" and objects["beaker_small"]["contents"] == {"liquid": 0.5}


def test_compile_orders_before_and_after_and_counts():
    wf = yaml.safe_load(compile_protocol("Shake the flask three times after opening the oven"))
    assert [next(iter(s)) for s in wf["steps"]] == ["open", "pick", "shake"]
    assert wf["steps"][2]["shake"]["count"] == 3
    wf = yaml.safe_load(compile_protocol("Before stirring the beaker with the glass rod, take the rod"))
    assert [next(iter(s)) for s in wf["steps"]] == ["pick", "stir"]


@pytest.mark.parametrize("text, words", [
    ("Heat the beaker", "unknown verb 'heat' in 'Heat the beaker'; closest known:"),
    ("Take the small beakre", "unknown object 'small beakre' in 'Take the small beakre'; closest known: beaker"),
    ("Pour it into the flask", "'it' refers to nothing yet"),
])
def test_compile_errors_name_the_closest_words(text, words):
    with pytest.raises(ProtocolError, match=words.replace("(", r"\(").replace(")", r"\)")):
        compile_protocol(text)


def test_compile_cli_writes_a_valid_workflow_and_fails_in_one_line(tmp_path, capsys):
    out = tmp_path / "wf.yaml"
    code, _, err = run_main(capsys, "compile", "open the oven door, then close it", "-o", str(out))
    assert code == 0, err
    assert validate(load_workflow(out)) == []
    proc = run_cli("labvla-genesis", "compile", "centrifuge the tube")  # the console script
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "unknown verb 'centrifuge'" in proc.stderr


def test_llm_compile_loads_a_local_model_and_validates_its_answer(tmp_path):
    """A random-weight causal LM loads from a local dir; its (garbage) answer is rejected by the validator."""
    from pathlib import Path

    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from lerobot_labvla.errors import LabVLAError
    from lerobot_labvla.genesis.protocol import compile_with_llm

    tok_dir = Path(__import__("lerobot_labvla.policy", fromlist=["x"]).__file__).parent / "tiny_tokenizer"
    tok = PreTrainedTokenizerFast.from_pretrained(tok_dir)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=8192))
    model.save_pretrained(tmp_path / "llm")
    tok.save_pretrained(tmp_path / "llm")
    with pytest.raises(ProtocolError, match="answered an invalid workflow"):
        compile_with_llm("take the beaker", tmp_path / "llm", max_new_tokens=8)
    with pytest.raises(LabVLAError, match="not a model directory"):
        compile_with_llm("take the beaker", tmp_path / "nope")


def test_generate_refuses_bad_input_in_one_line(tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    bad = write(tmp_path, HEAD + SCENE + "steps:\n  - place: {object: beaker, on: hot_plate}\n")
    for args, words in [
        ([str(EXAMPLES / "labutopia_pick_up.yaml"), "--out", str(foreign)], "is not a RoboGenesis dataset"),
        ([str(bad), "--out", str(tmp_path / "new")], "'beaker' is not in the hand"),
        ([str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "new")], "not found"),
        ([str(EXAMPLES / "labutopia_pick_up.yaml"), "--out", str(tmp_path / "new"), "--episodes", "0"], ">= 1"),
    ]:
        code, _, err = run_main(capsys, "generate", *args)
        assert code == 2 and words in err, (args, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    proc = run_cli("labvla-genesis", "generate", str(bad), "--out", str(tmp_path / "new"))  # the console script
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "'beaker' is not in the hand" in proc.stderr
    assert (foreign / "notes.txt").read_text() == "keep me" and not (tmp_path / "new").exists()
