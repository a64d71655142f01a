"""`labvla-genesis generate` end to end: a LeRobot v3 dataset that loads (per-episode annotations in LeRobot's
episode metadata, kept through clean and merge), scans clean, replays in the LabUtopia env, resumes after a kill,
survives a failed publish, records depth on request, and trains with lerobot-train unchanged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from genesis_helpers import EXAMPLES, run_cli

WF = EXAMPLES / "labutopia_pick_up.yaml"  # the shortest workflow (~95 frames)
IMAGE = 32
TINY_LABVLA = ["--policy.type=labvla", "--policy.backbone=tiny", "--policy.device=cpu", f"--policy.image_size={IMAGE}",
               "--policy.expert_layers=2", "--policy.expert_width=64", "--policy.expert_heads=4",
               "--policy.push_to_hub=false"]


def generate(out, episodes: int, *extra: str):
    return run_cli("labvla-genesis", "generate", str(WF), "--episodes", str(episodes), "--workers", "2",
                   "--out", str(out), "--image-size", str(IMAGE), "--seed", "0", *extra)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("genesis") / "pick_up"
    # Attempts 0 and 1 only, one per worker (both succeed): the same two episodes whichever finishes first. With a
    # third attempt in flight the kept pair depends on timing, and scan's dataset-relative action_outlier check
    # flags the pair (1, 2) (rz z-score 9.2 > 8: the expert's first re-orientation), not the pair (0, 1).
    proc = generate(out, 2, "--max-attempts", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kept 2/" in proc.stderr  # the progress bar's kept/tried
    assert "Svt[info]" not in proc.stderr  # the AV1 encoder's banner, once per video per episode
    return out


@pytest.mark.slow
def test_dataset_loads_with_annotations_and_report(dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.envs.labutopia import CAMERAS
    from lerobot_labvla.genesis.annotate import FRAME_STREAMS, STREAMS
    from lerobot_labvla.genesis.export import episode_annotations

    ds = LeRobotDataset("local/labutopia_pick_up", root=dataset)
    assert ds.num_episodes == 2 and ds.fps == 20 and ds.meta.info.codebase_version == "v3.0"
    assert set(ds.meta.video_keys) == {f"observation.images.{c}" for c in CAMERAS}
    item = ds[10]
    assert item["observation.images.front"].shape == (3, IMAGE, IMAGE)
    assert item["observation.state"].shape == (8,) and item["action"].shape == (7,)
    assert item["task"] and item["task"] in ds.meta.tasks.index
    for stream in FRAME_STREAMS:
        assert f"annotation.{stream}" in item, stream
    assert item["annotation.instruction_alignment"] == "0: pick up the beaker"
    depth = item["annotation.depth"].numpy()
    seen = depth[depth > 0]  # 0 = no surface within range (the sky above the bench)
    assert np.all(np.isfinite(depth)) and seen.size > depth.size // 2 and 0.1 < seen.min() and seen.max() < 5.0
    # The subgoal is the expert's target: the TCP (annotation.robot_state[:3]) heads towards it.
    first = ds.hf_dataset.select(range(40))  # columns only: no video decoding
    gap = np.linalg.norm(np.stack(first["annotation.subgoals"])[:, :3] - np.stack(first["annotation.robot_state"])[:, :3], axis=1)
    assert gap.max() < 0.1
    # Per-episode streams are columns of LeRobot's own episode metadata (meta/episodes/*.parquet).
    per_episode = {k for k, (where, _) in STREAMS.items() if where == "episode"}
    row = ds.meta.episodes[0]
    assert {f"annotation.{k}" for k in per_episode} <= set(row)
    assert "Step 1 (pick)" in row["annotation.success_explanation"]
    segments = json.loads(row["annotation.temporal_segments"])
    assert segments[0]["skill"] == "pick" and segments[-1]["end"] <= row["length"]
    episodes = episode_annotations(dataset)
    assert [e["episode_index"] for e in episodes] == [0, 1]
    assert episodes[0]["temporal_segments"] == segments and episodes[0]["episode_metadata"]["seed"] != \
        episodes[1]["episode_metadata"]["seed"]
    report = json.loads((dataset / "generation_report.json").read_text())
    assert report["kept"] == 2 and report["tried"] >= 2 and sum(report["rejected"].values()) == report["tried"] - 2
    assert not (dataset.parent / "pick_up.staging").exists()  # a finished run leaves no staging behind


@pytest.mark.slow
def test_recorded_actions_replay_to_success_in_the_labutopia_env(dataset):
    """Same action space as envs/labutopia: the env, seeded like the episode, succeeds on the recorded actions."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.genesis.export import episode_annotations

    ds = LeRobotDataset("local/labutopia_pick_up", root=dataset)
    meta = episode_annotations(dataset)[0]
    actions = np.stack(ds.hf_dataset.filter(lambda r: r["episode_index"] == 0)["action"])
    env = LabUtopiaEnv("pick_up", "id", obs_type="agent_pos", render_mode=None)
    env.reset(seed=meta["episode_metadata"]["seed"])
    success = False
    for a in actions:
        *_, terminated, _, info = env.step(a)
        success |= bool(info["is_success"])
    assert success
    env.reset(seed=meta["episode_metadata"]["seed"] + 1)  # another scene: the same actions fail
    assert not any(env.step(a)[4]["is_success"] for a in actions)


@pytest.mark.slow
def test_scan_has_no_errors_and_clean_and_merge_keep_episode_annotations(dataset, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.data_process.clean import clean_dataset
    from lerobot_labvla.genesis.export import episode_annotations

    proc = run_cli("labvla-data", "scan", "--root", str(dataset), "--out", str(tmp_path / "scan.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "scan.json").read_text())
    severities = [f["severity"] for ep in report["episodes"] for f in ep["findings"]]
    assert "error" not in severities, report["episodes"]
    # Clean drops episode 0 (LeRobot's delete_episodes renumbers, and writes only its own episode columns) ...
    report["episodes"][0]["findings"].append({"check": "nan_inf", "severity": "error", "message": "planted"})
    clean_dataset(dataset, tmp_path / "clean", report)
    source = episode_annotations(dataset)
    cleaned = episode_annotations(tmp_path / "clean")
    assert cleaned == [{**source[1], "episode_index": 0}]
    # ... and LeRobot's merge (its CLI, as users run it) appends them after the original's two.
    proc = run_cli("lerobot-edit-dataset", "--operation.type=merge",
                   "--operation.repo_ids=[local/labutopia_pick_up, local/clean]",
                   f"--operation.roots=[{dataset}, {tmp_path / 'clean'}]", "--new_repo_id=local/merged",
                   f"--new_root={tmp_path / 'merged'}", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    merged = LeRobotDataset("local/merged", root=tmp_path / "merged")
    assert merged.num_episodes == 3
    assert json.loads(merged.meta.episodes[2]["annotation.episode_metadata"]) == source[1]["episode_metadata"]
    assert [{k: v for k, v in e.items() if k != "episode_index"} for e in episode_annotations(tmp_path / "merged")] \
        == [{k: v for k, v in e.items() if k != "episode_index"} for e in [*source, source[1]]]


@pytest.mark.slow
def test_lerobot_train_runs_on_the_dataset(dataset, tmp_path):
    out = tmp_path / "train"
    proc = run_cli("lerobot-train", *TINY_LABVLA, "--dataset.repo_id=local/labutopia_pick_up",
                   f"--dataset.root={dataset}", f"--output_dir={out}", "--steps=2", "--batch_size=2",
                   "--num_workers=0", "--save_freq=2", "--wandb.enable=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "checkpoints" / "last" / "pretrained_model" / "config.json").is_file()


@pytest.mark.slow
def test_a_run_killed_while_publishing_leaves_a_loadable_dataset_and_resumes(dataset, tmp_path):
    """SIGKILL the run and its workers while it swaps a new episode in; the dataset loads, and re-running
    the command publishes the staged episode without rolling it out again (and never twice)."""
    import os
    import signal
    import subprocess
    import time

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from genesis_helpers import BIN
    from lerobot_labvla.genesis.export import episode_annotations

    out = tmp_path / "pick_up"
    shutil.copytree(dataset, out)
    before = np.stack(LeRobotDataset("local/labutopia_pick_up", root=out).hf_dataset["action"][:50])
    partial = out.with_name("pick_up.partial")
    cmd = [str(BIN / "labvla-genesis"), "generate", str(WF), "--episodes", "3", "--workers", "1", "--out", str(out),
           "--image-size", str(IMAGE), "--seed", "0", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None and not partial.exists():
            assert (out / "meta" / "info.json").is_file()  # never missing
            time.sleep(0.02)
        time.sleep(0.1)  # inside the publish (copy, LeRobotDataset.resume, encode, finalize, swap: seconds)
    finally:
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed, f"the run ended before it published: {proc.stderr.read().decode()[-2000:]}"
    assert LeRobotDataset("local/labutopia_pick_up", root=out).num_episodes in (2, 3)  # old or new, never broken
    log = out.with_name("pick_up.staging") / "attempts.jsonl"
    logged = [json.loads(line)["attempt"] for line in log.read_text().splitlines()] if log.is_file() else []
    logged += [a["attempt"] for a in json.loads((out / "generation_report.json").read_text())["attempts"]]
    proc = run_cli("labvla-genesis", "generate", str(WF), "--episodes", "3", "--out", str(out), "--image-size",
                   str(IMAGE), "--seed", "0", "--no-progress", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = LeRobotDataset("local/labutopia_pick_up", root=out)
    assert ds.num_episodes == 3 and not partial.exists()
    np.testing.assert_array_equal(np.stack(ds.hf_dataset["action"][:50]), before)
    report = json.loads((out / "generation_report.json").read_text())
    # Every attempt the killed run finished (published, or in the staging log) counts; none was rolled out again.
    assert report["kept"] == 3 and [a["attempt"] for a in report["attempts"]] == sorted(set(logged))
    rows = episode_annotations(out)
    assert [r["episode_index"] for r in rows] == list(range(3))
    assert len({r["episode_metadata"]["seed"] for r in rows}) == 3  # no attempt published twice


@pytest.mark.slow
def test_a_failed_publish_keeps_the_dataset(dataset, tmp_path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.genesis import export

    out = tmp_path / "pick_up"
    shutil.copytree(dataset, out)
    report = json.loads((out / "generation_report.json").read_text())
    bad = tmp_path / "attempt_000099.npz"  # a corrupt staged episode: publishing dies half-way
    bad.write_bytes(b"not an npz")
    with pytest.raises(Exception):
        export.publish(out, "local/labutopia_pick_up", [bad], report, fps=20)
    export.recover(out)
    assert not out.with_name("pick_up.partial").exists()
    assert LeRobotDataset("local/labutopia_pick_up", root=out).num_episodes == 2
    # Resuming with other settings is refused in one line.
    proc = run_cli("labvla-genesis", "generate", str(WF), "--episodes", "3", "--out", str(out), "--seed", "1",
                   "--image-size", str(IMAGE))
    assert proc.returncode == 2 and "--seed 0" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_an_episode_whose_video_disagrees_with_its_rows_is_never_published(dataset, tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.genesis import export
    from lerobot_labvla.genesis.generate import generate as run_generate
    from lerobot_labvla.genesis.workflow import load_workflow

    out = tmp_path / "pick_up"
    shutil.copytree(dataset, out)
    assert export.video_mismatches(out, [0, 1]) == {}
    meta = next((out / "meta" / "episodes").rglob("*.parquet"))
    table = pq.read_table(meta).to_pandas()
    table.loc[1, "videos/observation.images.front/to_timestamp"] -= 1 / 20  # one frame short, as LeRobot once wrote
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    table.to_parquet(next((broken / "meta" / "episodes").rglob("*.parquet")))
    assert list(export.video_mismatches(broken, [0, 1])) == [1]

    real, calls = export.video_mismatches, []

    def first_new_episode_bad(root, episodes):  # the writer garbles the first new episode once
        episodes = list(episodes)
        calls.append(episodes)
        return {episodes[0]: "front: 1 video frame short"} if len(calls) == 1 else real(root, episodes)

    monkeypatch.setattr(export, "video_mismatches", first_new_episode_bad)
    report = run_generate(load_workflow(WF), out, episodes=3, workers=1, image_size=IMAGE, flush_every=1, progress=False)
    assert report["kept"] == 3 and report["rejected"].get("export:video_frame_mismatch") == 1, report["rejected"]
    ds = LeRobotDataset("local/labutopia_pick_up", root=out)
    assert ds.num_episodes == 3 and real(out, range(3)) == {}
    dropped = next(a for a in report["attempts"] if a["reason"] == "export:video_frame_mismatch")
    assert dropped["seed"] not in {r["episode_metadata"]["seed"] for r in export.episode_annotations(out)}


@pytest.mark.slow
def test_depth_option_records_each_fixed_camera_as_a_lerobot_depth_video(tmp_path):
    """`--depth`: one LeRobot depth-map video per fixed camera (not the wrist), lossless to the millimetre."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.genesis import export
    from lerobot_labvla.genesis.runner import EpisodeJob, episode_seed, run_episode

    s = run_episode(EpisodeJob(WF.read_text(), str(WF), 0, episode_seed(0, 0), IMAGE, str(tmp_path), depth=True))
    assert s.kept, (s.reason, s.detail)
    with np.load(s.path) as z:
        raw, small = z["depth.front"][10], z["annotation.depth"][10]
    export.publish(tmp_path / "ds", "local/depth", [Path(s.path)], {"attempts": []}, fps=20)
    ds = LeRobotDataset("local/depth", root=tmp_path / "ds")
    assert ds.meta.depth_keys == ["observation.depth.front", "observation.depth.side"]
    decoded = ds[10]["observation.depth.front"].numpy()[0] / 1000.0  # LeRobot returns depth in millimetres
    seen = raw > 0
    assert seen.mean() > 0.5 and np.abs(decoded - raw)[seen].max() < 2e-3  # lossless but for mm rounding
    stride = IMAGE // int(np.sqrt(small.size))
    np.testing.assert_allclose(raw[::stride, ::stride].ravel(), small)  # the annotation is the same image, downsampled
    assert not np.allclose(ds[10]["observation.depth.side"].numpy(), ds[10]["observation.depth.front"].numpy())


def test_cameras_option_records_only_the_named_cameras_with_the_same_frames(tmp_path):
    """`--cameras wrist,front`: those two cameras (in LabUtopia's order), pixel for pixel what the full recording
    has, their extrinsics only; the rollout itself does not change; a resume with other cameras is refused."""
    from lerobot_labvla.errors import LabVLAError
    from lerobot_labvla.genesis.generate import generate as generate_fn
    from lerobot_labvla.genesis.runner import EpisodeJob, episode_seed, run_episode, select_cameras
    from lerobot_labvla.genesis.workflow import load_workflow

    assert select_cameras("wrist, front") == ("front", "wrist") and select_cameras(None) == ("front", "side", "wrist")
    for bad in ("top", ","):
        with pytest.raises(LabVLAError, match="--cameras"):
            select_cameras(bad)
    job = dict(workflow_text=WF.read_text(), workflow_file=str(WF), attempt=0, seed=episode_seed(0, 0),
               image_size=IMAGE)
    (tmp_path / "all").mkdir(), (tmp_path / "two").mkdir()
    full = run_episode(EpisodeJob(**job, staging=str(tmp_path / "all")))
    two = run_episode(EpisodeJob(**job, staging=str(tmp_path / "two"), cameras=("front", "wrist")))
    assert full.kept and two.kept and full.frames == two.frames
    with np.load(full.path) as a, np.load(two.path) as b:
        assert {k for k in b if k.startswith("pixels.")} == {"pixels.front", "pixels.wrist"}
        for cam in ("front", "wrist"):
            np.testing.assert_array_equal(a[f"pixels.{cam}"], b[f"pixels.{cam}"])
        np.testing.assert_array_equal(b["state"], a["state"])  # same rollout: the cameras only watch
        ext = a["annotation.camera_extrinsics"].reshape(len(b["state"]), 3, 16)
        np.testing.assert_array_equal(b["annotation.camera_extrinsics"].reshape(-1, 2, 16), ext[:, [0, 2]])
    out = tmp_path / "ds"
    generate_fn(load_workflow(WF), out, episodes=1, image_size=IMAGE, progress=False, cameras="front")
    info = json.loads((out / "meta" / "info.json").read_text())
    assert [k for k in info["features"] if k.startswith("observation.images.")] == ["observation.images.front"]
    with pytest.raises(LabVLAError, match="--cameras front"):
        generate_fn(load_workflow(WF), out, episodes=2, image_size=IMAGE, progress=False)


@pytest.mark.slow
def test_ray_backend_runs_the_same_rollouts(tmp_path):
    # Not in `make test`: the [cluster] extra's 79 MB wheel and a local Ray instance cost more than this test is
    # worth in every CI run (numbers in the README's Generation section).
    pytest.importorskip("ray", reason="Ray is the [cluster] extra, which `make test` does not install; run: "
                        ".venv/bin/python -m pip install -e '.[cluster]' && "
                        ".venv/bin/python -m pytest tests/genesis/test_generate.py -k ray")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / "ray"
    proc = run_cli("labvla-genesis", "generate", str(WF), "--episodes", "1", "--workers", "1", "--out", str(out),
                   "--image-size", str(IMAGE), "--backend", "ray")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert LeRobotDataset("local/labutopia_pick_up", root=out).num_episodes == 1


@pytest.mark.slow
def test_action_noise_executes_noisy_actions_and_records_the_experts_corrections(tmp_path):
    """`--action-noise` (DART): the arm runs recorded action + noise, the dataset keeps the clean expert action,
    and that action undoes the previous step's noise (the expert plans from the commanded pose)."""
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.genesis.runner import EpisodeJob, _noise_source, episode_seed, run_episode

    seed, std = episode_seed(0, 0), 0.3
    runs = {}
    for n in (0.0, std):
        (tmp_path / str(n)).mkdir()
        s = run_episode(EpisodeJob(WF.read_text(), str(WF), 0, seed, IMAGE, str(tmp_path / str(n)), action_noise=n))
        assert s.kept, (s.reason, s.detail)
        with np.load(s.path) as z:
            runs[n] = z["state"], z["action"]
            assert json.loads(str(z["episode_meta"]))["episode_metadata"]["action_noise"] == n
    (states, actions), (_, clean) = runs[std], runs[0.0]
    draw = _noise_source(np.random.default_rng([seed, 1]), std, actions.shape[1])
    noise = np.stack([draw() for _ in actions])
    assert np.all(noise[:, 6] == 0) and noise[:, :6].std() > 0.2  # the gripper is never perturbed

    env = LabUtopiaEnv("pick_up", "id", obs_type="agent_pos", render_mode=None)
    for add_noise, matches in ((True, True), (False, False)):
        obs, _ = env.reset(seed=seed)
        replayed = [obs["agent_pos"]]
        for a, n in zip(actions[:-1], noise):
            a = np.clip(a + n, env.action_space.low, env.action_space.high) if add_noise else a
            replayed.append(env.step(a.astype(np.float32))[0]["agent_pos"])
        gap = np.abs(np.stack(replayed) - states).max()
        assert (gap < 1e-5) if matches else (gap > 0.05), gap  # executed = recorded + noise; the labels are clean

    # The next label corrects the noise: against the noiseless episode (same scene, same plan), over the approach
    # (first 40 steps) where neither action is clipped, a[t+1] - clean[t+1] = -noise[t] (slope 1).
    t = min(40, len(clean))
    x, y = -noise[: t - 1, :6].ravel(), (actions[1:t, :6] - clean[1:t, :6]).ravel()
    free = (np.abs(actions[1:t, :6]) < 0.99).ravel() & (np.abs(clean[1:t, :6]) < 0.99).ravel()
    slope = np.polyfit(x[free], y[free], 1)[0]
    assert 0.9 < slope < 1.1 and free.mean() > 0.8, (slope, free.mean())


@pytest.mark.parametrize("std", [-0.1, float("nan"), float("inf")])
def test_action_noise_must_be_a_finite_non_negative_std(std, tmp_path):
    from lerobot_labvla.errors import LabVLAError
    from lerobot_labvla.genesis.generate import generate as generate_
    from lerobot_labvla.genesis.workflow import load_workflow

    with pytest.raises(LabVLAError, match="--action-noise .* must be a finite std >= 0"):
        generate_(load_workflow(WF), tmp_path / "out", episodes=1, action_noise=std)
    assert not (tmp_path / "out").exists()
