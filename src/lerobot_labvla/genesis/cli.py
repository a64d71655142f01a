"""`labvla-genesis`: validate / compile / generate, and robots / assets / scenes / preview (RoboGenesis).

    labvla-genesis validate examples/workflows/heat_beaker.yaml
    labvla-genesis compile "Take the small beaker, pour half into the flask ..." -o wf.yaml
    labvla-genesis generate wf.yaml --episodes 500 --workers 2 --out DIR --seed 0 [--backend ray]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from lerobot_labvla.errors import LabVLAError, cli_errors


def _validate(args) -> int:
    from lerobot_labvla.genesis.validate import validate
    from lerobot_labvla.genesis.workflow import WorkflowError, load_workflow

    bad = 0
    for path in args.workflows:
        try:
            issues = validate(load_workflow(path))
        except WorkflowError as exc:
            print(f"{exc.where}: error: {exc.message}" + (f"; fix: {exc.hint}" if exc.hint else ""), file=sys.stderr)
            bad += 1
            continue
        for issue in issues:
            print(issue, file=sys.stderr)
        errors = sum(i.severity == "error" for i in issues)
        warnings = len(issues) - errors
        if errors or (args.strict and warnings):
            bad += 1
        else:
            print(f"{path}: ok" + (f" ({warnings} warning{'s' * (warnings != 1)})" if warnings else ""))
    return 2 if bad else 0


def _compile(args) -> int:
    from lerobot_labvla.genesis.protocol import compile_protocol, compile_with_llm

    text = Path(args.protocol[1:]).read_text() if args.protocol.startswith("@") else args.protocol
    out = compile_with_llm(text, args.llm, args.name) if args.llm else compile_protocol(text, args.name)
    if args.output:
        tmp = Path(args.output).with_name(Path(args.output).name + ".tmp")
        tmp.write_text(out)
        os.replace(tmp, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(out)
    return 0


def _generate(args) -> int:
    from lerobot_labvla.genesis.generate import generate
    from lerobot_labvla.genesis.validate import validate
    from lerobot_labvla.genesis.workflow import load_workflow

    loaded = load_workflow(args.workflow)
    if args.robot is not None:  # the same workflow on another profile: validated for that robot
        from dataclasses import replace

        from lerobot_labvla.sim.robots import get_profile

        loaded = replace(loaded, workflow=loaded.workflow.model_copy(update={"robot": get_profile(args.robot).name}))
    errors = [i for i in validate(loaded) if i.severity == "error"]
    if errors:
        raise LabVLAError(f"{errors[0]} (run `labvla-genesis validate {args.workflow}` for all problems)")
    report = generate(loaded, Path(args.out), episodes=args.episodes, workers=args.workers, seed=args.seed,
                      image_size=args.image_size, backend=args.backend, repo_id=args.repo_id,
                      max_attempts=args.max_attempts, flush_every=args.flush_every, progress=not args.no_progress,
                      randomize=args.randomize, depth=args.depth, robot=args.robot,
                      action_noise=args.action_noise, cameras=args.cameras)
    print(json.dumps({k: report[k] for k in ("kept", "tried", "success_rate", "rejected")}))
    return 0 if report["kept"] >= args.episodes else 1


def _robots(args) -> int:
    """The robot profiles (sim/robots/): arms, DoF, gripper, state/action dims, model files' licence."""
    from lerobot_labvla.sim.robots import profiles

    rows = [("name", "arms", "dof", "state/action", "gripper", "reach m", "model files (licence)")]
    for p in profiles().values():
        rows.append((p.name, "+".join(a.name for a in p.arms), "+".join(str(a.dof) for a in p.arms),
                     f"{p.state_dim}/{p.action_dim}", f"{p.gripper}, <= {p.grip_force:.0f} N",
                     f"{p.reach[0]:.2f}-{p.reach[1]:.2f}", f"{p.package}: {p.licence}"))
    if args.json:
        print(json.dumps([dict(zip(rows[0], r, strict=True)) for r in rows[1:]], indent=1))
        return 0
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    return 0


def _assets(args) -> int:
    """The scene builder's asset library: families (role, variant count, parameter axes) or every variant id."""
    from lerobot_labvla.genesis.assets import FAMILIES, variants
    from lerobot_labvla.genesis.workflow import OBJECT_TYPES

    all_variants = variants()
    if args.all:
        for v in all_variants:
            print(f"{v.id:40s} {v.family.role:10s} footprint {v.footprint * 100:4.1f} cm  height {v.height * 100:5.1f} cm")
    else:
        print(f"{'family':20s} {'role':10s} {'variants':>8s}  parameters (workflow type: yes/no)")
        for name, fam in FAMILIES.items():
            axes = ", ".join(f"{a} ({len(v)})" for a, v in fam.grid.items())
            fills = f", fill ({len(fam.fills)})" if fam.fillable else ""
            count = sum(v.family is fam for v in all_variants)
            print(f"{name:20s} {fam.role:10s} {count:8d}  {axes}{fills}  ({'yes' if name in OBJECT_TYPES else 'no'})")
    print(f"{len(all_variants)} variants in {len(FAMILIES)} families", file=sys.stderr)
    return 0


def _scenes(args) -> int:
    if args.n is not None:
        from lerobot_labvla.genesis.scene_survey import print_table, survey, write_json

        if args.n < 1:
            raise LabVLAError(f"--n {args.n} must be >= 1")
        if not 0.0 <= args.shelf <= 1.0:
            raise LabVLAError(f"--shelf {args.shelf} must be a probability in [0, 1]")
        preset = {"preset": args.randomize, "clutter": {"shelf": args.shelf}} if args.shelf else args.randomize
        report = survey(args.n, args.seed, preset, progress=not args.no_progress)
        print_table(report)
        if args.json:
            write_json(report, args.json)
            print(f"wrote {args.json}", file=sys.stderr)
        return 0
    from lerobot_labvla.envs.labutopia.tasks import TASKS
    from lerobot_labvla.genesis.validate import scene_objects
    from lerobot_labvla.genesis.workflow import parse_workflow

    for name in TASKS:
        wf = parse_workflow(f"name: x\ninstruction: x\nscene: {{labutopia: {name}}}\nsteps:\n  - move: {{to: [0.5, 0, 0.3]}}\n")
        objs = scene_objects(wf.workflow)
        print(f"{name:18s} " + ", ".join(f"{n} ({o.type})" for n, o in objs.items()))
    return 0


def _preview(args) -> int:
    """A grid of first frames: row `none`, then each randomization axis alone at the preset's ranges, then all
    of them; one column per seed; the instruction each episode would get under the cell."""
    import textwrap

    import numpy as np
    from PIL import Image, ImageDraw

    from lerobot_labvla.envs.labutopia.splits import get_split
    from lerobot_labvla.genesis.axes import Randomization, resolve
    from lerobot_labvla.genesis.randomize import SceneRejected, build_scene, home_qpos
    from lerobot_labvla.genesis.runner import _cameras
    from lerobot_labvla.genesis.workflow import load_workflow
    from lerobot_labvla.sim.render import Cameras

    wf = load_workflow(args.workflow).workflow
    cameras, names = _cameras()
    if args.camera not in names:
        raise LabVLAError(f"--camera {args.camera!r} unknown; expected one of {', '.join(names)}")
    if not 1 <= args.cols <= 16 or not 32 <= args.size <= 640:
        raise LabVLAError(f"--cols {args.cols} (1..16) or --size {args.size} (32..640) out of range")
    rz = resolve(args.randomize)
    rows = [("none", resolve("none"))]
    rows += [(axis, Randomization.model_validate({"preset": "none", axis: getattr(rz, axis).model_dump()}))
             for axis in rz.axes]
    if len(rz.axes) > 1:
        rows.append((f"{args.randomize} (all)", rz))
    s, label, caption = args.size, 92, 26
    grid = Image.new("RGB", (label + args.cols * s, len(rows) * (s + caption)), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    split = get_split("id")
    for r, (row_name, row_rz) in enumerate(rows):
        y = r * (s + caption)
        draw.text((4, y + s // 2), row_name, fill=(0, 0, 0))
        for k in range(args.cols):
            x = label + k * s
            try:
                builder, ctx = build_scene(wf, np.random.default_rng(args.seed + k), split, row_rz)
            except SceneRejected as exc:
                draw.rectangle([x, y, x + s - 1, y + s - 1], fill=(200, 200, 200))
                draw.text((x + 4, y + 4), "rejected:\n" + "\n".join(exc.failed), fill=(120, 0, 0))
                continue
            sim = builder.build()
            sim.reset(home_qpos(builder))
            cams = Cameras(sim.model, names, s, s)
            try:
                grid.paste(Image.fromarray(cams.rgb(sim.data, args.camera)), (x, y))
            finally:
                cams.close()
            lines = textwrap.wrap(f"seed {args.seed + k}: {ctx.get('instruction', wf.instruction)}", max(8, s // 6 - 1))
            draw.text((x + 2, y + s + 1), "\n".join(lines[:2]), fill=(0, 0, 0))
    out = Path(args.output)
    tmp = out.with_name(out.name + ".tmp.png")
    grid.save(tmp)
    os.replace(tmp, out)
    print(f"wrote {out} ({len(rows)} rows: {', '.join(n for n, _ in rows)}; seeds {args.seed}..{args.seed + args.cols - 1};"
          f" camera {args.camera})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="labvla-genesis", description="RoboGenesis: lab protocols -> LeRobot datasets")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("validate", help="check workflow YAMLs offline (exit 2 on errors)")
    v.add_argument("workflows", nargs="+")
    v.add_argument("--strict", action="store_true", help="warnings fail too")
    c = sub.add_parser("compile", help="protocol text -> validated workflow YAML")
    c.add_argument("protocol", help="the protocol text, or @file.txt")
    c.add_argument("-o", "--output", help="write the YAML here (default: stdout)")
    c.add_argument("--name", default="compiled_protocol", help="workflow name")
    c.add_argument("--llm", help="a local instruction-tuned model directory (transformers) instead of the parser")
    g = sub.add_parser("generate", help="roll out a workflow and write a LeRobot v3 dataset")
    g.add_argument("workflow")
    g.add_argument("--episodes", type=int, default=10, help="successful episodes to keep")
    g.add_argument("--workers", type=int, default=1)
    g.add_argument("--out", required=True, help="dataset directory (LeRobotDataset(repo_id, root=OUT))")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--image-size", type=int, default=224, help="square camera images (LabUtopia's default: 224)")
    g.add_argument("--backend", choices=("local", "ray"), default="local", help="local process pool or a Ray cluster")
    g.add_argument("--repo-id", default=None, help="dataset repo id (default: local/<workflow name>)")
    g.add_argument("--max-attempts", type=int, default=None, help="give up after this many tries (default: 3x episodes + 10)")
    g.add_argument("--flush-every", type=int, default=25, help="publish the dataset every N kept episodes")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--depth", action="store_true",
                   help="also record each fixed camera's depth in metres (LeRobot depth video observation.depth.<camera>)")
    g.add_argument("--cameras", default="all",
                   help="comma-separated cameras to record, e.g. front or front,wrist (default: all three, front,side,wrist); "
                        "rendering is most of the cost at small image sizes, so fewer cameras generate faster")
    g.add_argument("--robot", default=None, help="robot profile replacing the workflow's `robot:` (labvla-genesis robots)")
    g.add_argument("--action-noise", type=float, default=0.0, metavar="STD",
                   help="noise injection: the arm executes the expert's ee_delta action plus Gaussian noise of this std "
                        "(action units, 1 = 2.5 cm / 0.1 rad) while the dataset records the clean action (default 0: off)")
    g.add_argument("--randomize", choices=("none", "light", "full"), default=None,
                   help="randomization preset (six axes + paraphrases; default: the workflow's `randomize:`, else legacy jitter)")
    r = sub.add_parser("robots", help="robot profiles a workflow can name (`robot:`): arms, DoF, gripper, licence")
    r.add_argument("--json", action="store_true", help="one JSON list instead of a table")
    a = sub.add_parser("assets", help="the scene builder's asset families and variants")
    a.add_argument("--all", action="store_true", help="list every variant id")
    sc = sub.add_parser("scenes", help="LabUtopia scenes and their objects; with --n: build and validate random scenes")
    sc.add_argument("--n", type=int, default=None, help="build and validate this many random scenes, print the pass rate per check")
    sc.add_argument("--seed", type=int, default=0)
    sc.add_argument("--randomize", choices=("none", "light", "full"), default="full", help="preset the scenes are drawn under")
    sc.add_argument("--shelf", type=float, default=0.0,
                    help="probability of a shelf holding distractors in each scene (the preset's clutter.shelf: 0)")
    sc.add_argument("--json", default=None, help="also write the report here (e.g. benchmarks/results/genesis_scenes.json)")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")
    pv = sub.add_parser("preview", help="a PNG grid of first frames: one row per randomization axis, one column per seed")
    pv.add_argument("workflow")
    pv.add_argument("-o", "--out", "--output", dest="output", default="preview.png")
    pv.add_argument("--seed", type=int, default=0, help="first seed (columns are seed, seed+1, ...)")
    pv.add_argument("--cols", type=int, default=4, help="seeds per row")
    pv.add_argument("--randomize", choices=("none", "light", "full"), default="full",
                    help="preset whose ranges the rows use (each axis alone, then all together)")
    pv.add_argument("--camera", default="front", help="which camera to show (front, side, wrist)")
    pv.add_argument("--size", type=int, default=192, help="pixels per cell")
    return p


@cli_errors
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        if args.episodes < 1 or args.workers < 1:
            raise LabVLAError(f"--episodes {args.episodes} and --workers {args.workers} must be >= 1")
        if not 16 <= args.image_size <= 1024:
            raise LabVLAError(f"--image-size {args.image_size} out of range; expected 16..1024")
    handler = {"validate": _validate, "compile": _compile, "generate": _generate, "robots": _robots,
               "assets": _assets, "scenes": _scenes, "preview": _preview}[args.command]
    raise SystemExit(handler(args))


if __name__ == "__main__":
    main()
