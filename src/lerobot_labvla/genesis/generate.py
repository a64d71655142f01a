"""`generate`: attempts in parallel workers (process pool or Ray) -> staged episodes -> published dataset.

State lives in two places, both crash-safe: the published dataset's `generation_report.json`
(every attempt that went into it) and `<out>.staging/` (kept episodes not yet published, one
.npz each, and `attempts.jsonl`, one line per finished attempt). Re-running the same command
continues from there; attempt k always uses `episode_seed(seed, k)`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.genesis import export
from lerobot_labvla.genesis.runner import EpisodeJob, EpisodeSummary, episode_seed, run_episode
from lerobot_labvla.genesis.workflow import LoadedWorkflow


class _LocalPool:
    def __init__(self, workers: int):
        # forkserver: workers start from a clean interpreter (no inherited GL contexts or torch threads).
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"))
        self.pending = set()

    def submit(self, job: EpisodeJob) -> None:
        self.pending.add(self.pool.submit(run_episode, job))

    def next_done(self) -> list[EpisodeSummary]:
        done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
        return [f.result() for f in done]

    def close(self) -> None:
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    def __init__(self, workers: int):
        try:
            import ray
        except ImportError:
            raise LabVLAError("--backend ray needs Ray; fix: pip install 'lerobot_policy_labvla[cluster]'") from None
        self.ray = ray
        if not ray.is_initialized():
            # RAY_ADDRESS set -> join that cluster; otherwise a local instance with `workers` CPUs.
            ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS") else workers,
                     include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {k: os.environ[k] for k in ("MUJOCO_GL", "PYOPENGL_PLATFORM") if k in os.environ}})
        self.remote = ray.remote(num_cpus=1)(run_episode)
        self.pending = []

    def submit(self, job: EpisodeJob) -> None:
        self.pending.append(self.remote.remote(job))

    def next_done(self) -> list[EpisodeSummary]:
        done, self.pending = self.ray.wait(self.pending, num_returns=1)
        return self.ray.get(done)

    def close(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.ray.shutdown()


def _read_attempts(staging: Path) -> dict[int, dict]:
    out = {}
    log = staging / "attempts.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            out[row["attempt"]] = row
    return out


def generate(loaded: LoadedWorkflow, out: Path, episodes: int, workers: int = 1, seed: int = 0, image_size: int = 224,
             backend: str = "local", repo_id: str | None = None, max_attempts: int | None = None,
             flush_every: int = 25, progress: bool = True) -> dict:
    """Roll out until `episodes` are kept (or `max_attempts` tried); returns the generation report."""
    from tqdm import tqdm

    wf = loaded.workflow
    out = Path(out)
    repo_id = repo_id or f"local/{wf.name}"
    max_attempts = max_attempts or 3 * episodes + 10
    export.recover(out)
    staging = out.with_name(out.name + ".staging")
    staging.mkdir(parents=True, exist_ok=True)
    text = Path(loaded.file).read_text() if Path(loaded.file).is_file() else None
    if text is None:
        raise LabVLAError(f"workflow file {loaded.file!r} vanished")

    report = export.load_report(out) or {
        "workflow": wf.name, "workflow_file": str(loaded.file), "repo_id": repo_id, "seed": seed,
        "image_size": image_size, "attempts": [], "timings_s": {}}
    if report["seed"] != seed or report["image_size"] != image_size or report["workflow"] != wf.name:
        raise LabVLAError(f"{out} was generated from workflow {report['workflow']!r} with --seed {report['seed']} "
                          f"--image-size {report['image_size']}; fix: resume with the same values or pick a new --out")
    published = {a["attempt"]: a for a in report["attempts"]}
    staged = {k: v for k, v in _read_attempts(staging).items() if k not in published}
    for k, row in list(staged.items()):  # kept but its .npz is gone or half-written: retry that attempt
        if row["kept"] and not Path(row["path"]).is_file():
            del staged[k]
    for stale in staging.glob("*.npz"):
        if not any(r.get("path") == str(stale) for r in staged.values()):
            stale.unlink()

    timings = Counter(report.get("timings_s", {}))
    done = {**published, **staged}
    kept = sum(r["kept"] for r in done.values())
    next_attempt = max(done, default=-1) + 1
    unpublished = sorted((r for r in staged.values() if r["kept"]), key=lambda r: r["attempt"])

    def flush() -> None:
        """Publish the staged episodes (if any), then persist the report and trim the staging log."""
        nonlocal unpublished
        report["attempts"] = sorted(done.values(), key=lambda r: r["attempt"])
        _finish_report(report, episodes, timings)
        if unpublished:
            timings.update(export.publish(out, repo_id, [Path(r["path"]) for r in unpublished], report, fps=_fps()))
            for r in unpublished:
                Path(r["path"]).unlink(missing_ok=True)
            unpublished = []
            _finish_report(report, episodes, timings)
        if (out / "meta" / "info.json").is_file():
            export.write_report(out, report)
            in_report = {a["attempt"] for a in report["attempts"]}
            tmp = staging / "attempts.jsonl.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in done.values() if r["attempt"] not in in_report))
            os.replace(tmp, staging / "attempts.jsonl")

    bar = tqdm(total=episodes, initial=min(kept, episodes), unit="ep", disable=not progress, dynamic_ncols=True,
               desc=f"genesis {wf.name}")
    _postfix(bar, kept, len(done))
    pool = (_RayPool if backend == "ray" else _LocalPool)(workers) if kept < episodes else None
    in_flight = 0
    t_start = time.perf_counter()
    try:
        while pool is not None and (kept < episodes or in_flight):
            while kept + in_flight < episodes + workers - 1 and in_flight < 2 * workers \
                    and next_attempt < max_attempts and kept < episodes:
                pool.submit(EpisodeJob(text, str(loaded.file), next_attempt, episode_seed(seed, next_attempt),
                                       image_size, str(staging)))
                next_attempt += 1
                in_flight += 1
            if in_flight == 0:
                break
            for s in pool.next_done():
                in_flight -= 1
                row = asdict(s)
                if s.kept and kept >= episodes:  # a surplus success of the last batch
                    Path(s.path).unlink(missing_ok=True)
                    row.update(kept=False, reason="surplus", path="")
                done[s.attempt] = row
                with open(staging / "attempts.jsonl", "a") as log:  # reopened: flush() replaces the file
                    log.write(json.dumps(row) + "\n")
                timings.update({k: v for k, v in s.timings.items()})
                if row["kept"]:
                    kept += 1
                    unpublished.append(row)
                    bar.update(1)
                _postfix(bar, kept, len(done))
                if len(unpublished) >= flush_every:
                    flush()
    finally:
        if pool is not None:
            pool.close()
        bar.close()
    timings["wall"] += time.perf_counter() - t_start
    flush()
    if kept >= episodes and not any((staging).glob("*.npz")):
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _fps() -> int:
    from lerobot_labvla.envs.labutopia import FPS

    return FPS


def _postfix(bar, kept: int, tried: int) -> None:
    bar.set_postfix_str(f"kept {kept}/{tried} tried, success {kept / tried:.0%}" if tried else "starting workers")


def _finish_report(report: dict, episodes: int, timings: Counter) -> None:
    attempts = report["attempts"]
    tried = [a for a in attempts if a["reason"] != "surplus"]
    kept = sum(a["kept"] for a in attempts)
    report.update(
        episodes_requested=episodes, kept=kept, tried=len(tried),
        success_rate=round(kept / len(tried), 4) if tried else 0.0,
        rejected=dict(sorted(Counter(a["reason"] for a in tried if not a["kept"]).items())),
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
