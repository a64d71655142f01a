"""`labvla-genesis generate` end to end: a LeRobot v3 dataset that loads, scans clean, replays in the
LabUtopia env, resumes, survives a failed publish, and trains with lerobot-train unchanged."""

from __future__ import annotations

import json
import shutil

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
    proc = generate(out, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kept 2/" in proc.stderr  # the progress bar's kept/tried
    return out


@pytest.mark.slow
def test_dataset_loads_with_annotations_and_report(dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.envs.labutopia import CAMERAS
    from lerobot_labvla.genesis.annotate import FRAME_STREAMS, STREAMS

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
    episodes = [json.loads(line) for line in (dataset / "meta/genesis/episodes.jsonl").read_text().splitlines()]
    assert [e["episode_index"] for e in episodes] == [0, 1]
    per_episode = {k for k, (where, _) in STREAMS.items() if where == "episode"}
    assert per_episode <= set(episodes[0])
    assert "Step 1 (pick)" in episodes[0]["success_explanation"]
    report = json.loads((dataset / "generation_report.json").read_text())
    assert report["kept"] == 2 and report["tried"] >= 2 and sum(report["rejected"].values()) == report["tried"] - 2
    assert not (dataset.parent / "pick_up.staging").exists()  # a finished run leaves no staging behind


@pytest.mark.slow
def test_recorded_actions_replay_to_success_in_the_labutopia_env(dataset):
    """Same action space as envs/labutopia: the env, seeded like the episode, succeeds on the recorded actions."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    ds = LeRobotDataset("local/labutopia_pick_up", root=dataset)
    meta = json.loads((dataset / "meta/genesis/episodes.jsonl").read_text().splitlines()[0])
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
def test_scan_has_no_errors(dataset, tmp_path):
    proc = run_cli("labvla-data", "scan", "--root", str(dataset), "--out", str(tmp_path / "scan.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "scan.json").read_text())
    severities = [f["severity"] for ep in report["episodes"] for f in ep["findings"]]
    assert "error" not in severities, report["episodes"]


@pytest.mark.slow
def test_lerobot_train_runs_on_the_dataset(dataset, tmp_path):
    out = tmp_path / "train"
    proc = run_cli("lerobot-train", *TINY_LABVLA, "--dataset.repo_id=local/labutopia_pick_up",
                   f"--dataset.root={dataset}", f"--output_dir={out}", "--steps=2", "--batch_size=2",
                   "--num_workers=0", "--save_freq=2", "--wandb.enable=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "checkpoints" / "last" / "pretrained_model" / "config.json").is_file()


@pytest.mark.slow
def test_killed_run_leaves_a_loadable_dataset_and_resumes(dataset, tmp_path):
    import os
    import signal
    import subprocess
    import time

    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from genesis_helpers import BIN

    out = tmp_path / "pick_up"
    shutil.copytree(dataset, out)
    before = np.stack(LeRobotDataset("local/labutopia_pick_up", root=out).hf_dataset["action"][:50])
    cmd = [str(BIN / "labvla-genesis"), "generate", str(WF), "--episodes", "4", "--workers", "2", "--out", str(out),
           "--image-size", str(IMAGE), "--seed", "0", "--flush-every", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            assert (out / "meta" / "info.json").is_file()  # never missing, not even during a publish
            if json.loads((out / "generation_report.json").read_text())["kept"] >= 3:
                break
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers, mid-episode
        proc.wait()
    killed = LeRobotDataset("local/labutopia_pick_up", root=out)  # whatever moment the kill hit, it loads
    assert killed.num_episodes >= 3
    proc = generate(out, 4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds = LeRobotDataset("local/labutopia_pick_up", root=out)
    assert ds.num_episodes == 4
    np.testing.assert_array_equal(np.stack(ds.hf_dataset["action"][:50]), before)
    report = json.loads((out / "generation_report.json").read_text())
    assert report["kept"] == 4 and [a["attempt"] for a in report["attempts"]][:2] == [0, 1]
    rows = [json.loads(line) for line in (out / "meta/genesis/episodes.jsonl").read_text().splitlines()]
    assert [r["episode_index"] for r in rows] == list(range(4))
    assert len({r["episode_metadata"]["seed"] for r in rows}) == 4  # no attempt published twice


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
    sidecar = [json.loads(line) for line in (out / "meta/genesis/episodes.jsonl").read_text().splitlines()]
    dropped = next(a for a in report["attempts"] if a["reason"] == "export:video_frame_mismatch")
    assert dropped["seed"] not in {r["episode_metadata"]["seed"] for r in sidecar}


@pytest.mark.slow
def test_ray_backend_runs_the_same_rollouts(tmp_path):
    pytest.importorskip("ray")
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / "ray"
    proc = run_cli("labvla-genesis", "generate", str(WF), "--episodes", "1", "--workers", "1", "--out", str(out),
                   "--image-size", str(IMAGE), "--backend", "ray")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert LeRobotDataset("local/labutopia_pick_up", root=out).num_episodes == 1
