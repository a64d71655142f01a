"""FSDP on CPU: PyTorch's FSDP2 (`fully_shard`) over 2 gloo ranks, sharding exactly the units
`parallelize.fsdp_shard_units` names for the tiny labvla in `ki` mode (cross-attention DiT expert, and the
MoT expert), trains like one process on the same global batch and saves a checkpoint that loads and samples.

accelerate 1.x turns FSDP on only for GPU-like devices (its CPU path is MULTI_CPU, i.e. DDP), so the
`accelerate launch --config_file configs/accelerate/fsdp.yaml` run stays a GPU test
(test_policy_multiprocess.py). This test shards with torch's own FSDP2 instead, under `torchrun`: it checks
that our shard units are FSDP-safe (no unit's parameters are read outside its forward) and that sharded
training equals unsharded training, not accelerate's FSDP1 wrapping itself.

This file is also the rank script: `torchrun ... test_policy_fsdp_cpu.py WORKDIR` runs `worker`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import torch

STEPS = 3
MODES = ("cross", "mot")


def fixed_draws(t: torch.Tensor, noise: torch.Tensor):
    """Make the FM loss's random time and noise the given ones, so that the sharded ranks and the
    single-process reference draw the same values for the same samples."""
    from lerobot_labvla.policy import modeling_labvla

    def randn_like(like, *args, **kwargs):
        assert like.shape == noise.shape, (like.shape, noise.shape)
        return noise.clone()

    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch.object(modeling_labvla, "sample_time_beta", lambda *a, **k: t.clone()))
    stack.enter_context(mock.patch.object(modeling_labvla.torch, "randn_like", randn_like))
    return stack


def share(x, rank: int, world: int):
    """The rank's contiguous share of a batch dimension (a tensor's dim 0 or a prompt list)."""
    lo, hi = rank * len(x) // world, (rank + 1) * len(x) // world
    return x[lo:hi]


def part(batch: dict, rank: int, world: int) -> dict:
    return {k: share(v, rank, world) if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()}


def drawn(draws: dict, step: int, rank: int, world: int):
    """This step's FM time `(b,)` and noise `(b, T, A)` for the rank's samples."""
    return fixed_draws(share(draws["t"][step], rank, world), share(draws["noise"][step], rank, world))


def optimizer(policy) -> torch.optim.Optimizer:
    """The policy's own AdamW groups (its learning rates, no decay on 1-D params, fused on CPU), LeRobot's betas.

    eps 1e-6 instead of 1e-8: a gradient that is zero in exact arithmetic (the DiT's key biases: softmax
    ignores a shift shared by all keys) is float noise of ~1e-9 whose sign depends on the summation order,
    and Adam with eps 1e-8 turns that noise into full learning-rate steps of either sign.
    """
    return torch.optim.AdamW(policy.get_optim_params(), betas=(0.9, 0.95), eps=1e-6)


def train(policy, batch: dict, draws: dict, rank: int, world: int, all_reduce=None) -> tuple[list[float], list[float]]:
    """STEPS AdamW steps with LeRobot's grad clip 1.0; each rank's loss is on its share of the global batch.

    Returns the global loss (the mean over ranks, what DDP/FSDP optimize) and the clipped grad norm per step.
    """
    opt = optimizer(policy)
    losses, norms = [], []
    for step in range(STEPS):
        opt.zero_grad()
        with drawn(draws, step, rank, world):
            loss, _ = policy(part(batch, rank, world))
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        loss = loss.detach()
        if all_reduce is not None:
            loss = all_reduce(loss) / world
        losses.append(loss.item())
        norms.append(float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm))
    return losses, norms


def reference(checkpoint: Path, batch: dict, draws: dict, world: int) -> tuple[object, list[float], list[float]]:
    """One process, unsharded: the gradient is the mean of the per-rank losses' gradients (what the ranks'
    reduce-scatter computes), i.e. the same global batch split the same way."""
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    policy = LabVLAPolicy.from_pretrained(checkpoint).train()
    opt = optimizer(policy)
    losses, norms = [], []
    for step in range(STEPS):
        opt.zero_grad()
        total = 0.0
        for rank in range(world):
            with drawn(draws, step, rank, world):
                loss, _ = policy(part(batch, rank, world))
            (loss / world).backward()
            total += loss.item() / world
        norms.append(float(torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)))
        opt.step()
        losses.append(total)
    return policy, losses, norms


def shard(policy, mesh) -> list[str]:
    """FSDP2 over `parallelize.fsdp_shard_units`: each unit module its own FSDP group, the rest in the root."""
    from torch.distributed.fsdp import fully_shard

    from lerobot_labvla.policy.parallelize import fsdp_shard_units

    units = set(fsdp_shard_units(policy))
    wrapped = [name for name, m in policy.named_modules() if type(m).__name__ in units]
    for name in wrapped:  # the units never nest, so their order does not matter
        fully_shard(policy.get_submodule(name), mesh=mesh)
    fully_shard(policy, mesh=mesh)
    return wrapped


def worker(workdir: Path) -> None:
    """One rank: shard, train STEPS steps, gather the full state dict, and (rank 0) save it as a checkpoint."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh

    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    batch = torch.load(workdir / "batch.pt", weights_only=False)
    draws = torch.load(workdir / "draws.pt")

    def all_reduce(x):
        dist.all_reduce(x)
        return x

    for mode in MODES:
        policy = LabVLAPolicy.from_pretrained(workdir / mode / "init").train()
        wrapped = shard(policy, mesh)
        print(f"rank {rank} {mode}: {len(wrapped)} FSDP units {sorted({n.rsplit('.', 1)[0] for n in wrapped})}", flush=True)
        losses, norms = train(policy, batch, draws, rank, world, all_reduce)
        full = get_model_state_dict(policy, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            plain = LabVLAPolicy.from_pretrained(workdir / mode / "init")
            plain.load_state_dict(full, strict=True)
            plain.save_pretrained(workdir / mode / "fsdp")
            for processor in (workdir / mode / "init").glob("policy_*processor*"):  # as lerobot-train saves them
                shutil.copy(processor, workdir / mode / "fsdp")
            torch.save({"losses": losses, "norms": norms, "units": wrapped}, workdir / mode / "fsdp.pt")
        dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
else:
    import pytest
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    from test_policy_modeling import raw_batch
    from test_policy_training import TINY

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def torchrun(workdir: Path, timeout: int = 400) -> subprocess.Popen:
        """2 ranks on the loopback interface (static rendezvous, gloo pinned to `lo`), in their own process
        group, so that a hang is killed whole below pytest's 900 s and its output shown (see test_policy_multiprocess)."""
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc-per-node=2", "--node-rank=0",
            "--rdzv-backend=static", "--master-addr=127.0.0.1", f"--master-port={free_port()}",
            __file__, str(workdir),
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
               "MASTER_ADDR": "127.0.0.1", "GLOO_SOCKET_IFNAME": "lo"}
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)

    def wait(proc: subprocess.Popen, timeout: int = 400) -> str:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"torchrun ran past {timeout} s; the ranks' output:\n{out[-4000:]}")
        assert proc.returncode == 0, f"rc={proc.returncode}; the ranks' output:\n{out[-4000:]}"
        return out

    @pytest.mark.slow
    def test_fsdp2_on_two_cpu_ranks_trains_like_one_process_and_its_checkpoint_samples(ds7, tmp_path):
        """What it caught or catches (each planted once by hand):
        - a shard unit's weights used outside its forward: the MoT expert applied each decoder layer's k_norm
          in `project_context` (the ranks crash: "mixed torch.Tensor and DTensor"; fixed in mot.py);
        - no gradient reduction across ranks (`set_requires_gradient_sync(False)`): the losses part after step 1;
        - grad clipping by the norm of a rank's own shard: the grad norms differ (the losses alone did not
          notice: Adam's first steps are nearly invariant to the gradient's scale).
        """
        world = 2
        raw = raw_batch(ds7, size=4)
        gen = torch.Generator().manual_seed(0)
        for mode in MODES:
            kw = TINY | ({"expert_attention": "mot", "expert_width": 32} if mode == "mot" else {})
            cfg = LabVLAConfig(**kw, mode="ki")
            policy = make_policy(cfg, ds_meta=ds7.meta)
            pre, post = make_pre_post_processors(cfg, dataset_stats=ds7.meta.stats)
            for part_ in (policy, pre, post):  # a checkpoint as lerobot-train writes it (the normalizer too)
                part_.save_pretrained(tmp_path / mode / "init")
        batch = pre(raw)
        actions = batch["action"]
        shape = (STEPS, actions.shape[0], actions.shape[1], cfg.max_action_dim)
        draws = {"t": torch.rand(STEPS, shape[1], generator=gen), "noise": torch.randn(shape, generator=gen)}
        torch.save(batch, tmp_path / "batch.pt")
        torch.save(draws, tmp_path / "draws.pt")

        proc = torchrun(tmp_path)  # the ranks run while this process computes the unsharded reference
        try:
            refs = {mode: reference(tmp_path / mode / "init", batch, draws, world) for mode in MODES}
        finally:
            out = wait(proc)

        for mode in MODES:
            ref_policy, ref_losses, ref_norms = refs[mode]
            run = torch.load(tmp_path / mode / "fsdp.pt")
            # Every expert block and VLM layer is its own unit (the root keeps embeddings, heads, projections).
            assert sum(".transformer_blocks." in u or ".mot_layers." in u or u.startswith("expert.") for u in run["units"]) >= 2, run["units"]
            assert any(".language_model.layers." in u for u in run["units"]), run["units"]
            # (a) Same losses and clipped-gradient norms as one process on the global batch; the norms are
            # > 1 (clipping is active), so a norm taken over a rank's shard alone would not match.
            torch.testing.assert_close(run["losses"], ref_losses, rtol=1e-5, atol=1e-6, msg=f"{mode} losses\n{out[-2000:]}")
            torch.testing.assert_close(run["norms"], ref_norms, rtol=1e-4, atol=1e-6, msg=f"{mode} grad norms")
            assert min(ref_norms) > 1.0, ref_norms
            # ... and the same updated parameters, gathered from the shards into a plain checkpoint.
            loaded = LabVLAPolicy.from_pretrained(tmp_path / mode / "fsdp")
            init = LabVLAPolicy.from_pretrained(tmp_path / mode / "init").state_dict()
            ref_state, got = ref_policy.state_dict(), loaded.state_dict()
            assert ref_state.keys() == got.keys()
            moved = 0
            for name, value in ref_state.items():
                if not value.is_floating_point():
                    assert torch.equal(got[name], value), name
                    continue
                # The updates, not the weights: 3 steps at lr 1e-4 move a weight by <= 3e-4, less than a
                # relative tolerance on a weight of size ~1 would notice.
                torch.testing.assert_close(got[name] - init[name], value - init[name], rtol=1e-3, atol=1e-6, msg=f"{mode} {name}")
                moved += not torch.equal(value, init[name])
            assert moved > len(ref_state) // 2, f"{mode}: only {moved} of {len(ref_state)} tensors trained"
            # (b) The checkpoint samples, as the in-memory model does.
            sample = part(batch, 0, world)
            noise = torch.randn(len(sample["observation.state"]), cfg.chunk_size, cfg.max_action_dim, generator=gen)
            chunk = loaded.eval().predict_action_chunk(sample, noise=noise)
            assert torch.isfinite(chunk).all()
            torch.testing.assert_close(chunk, ref_policy.eval().predict_action_chunk(sample, noise=noise), rtol=1e-4, atol=1e-5)
