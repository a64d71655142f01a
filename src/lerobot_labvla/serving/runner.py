"""Load a LeRobot checkpoint the standard way and run batches of validated observations through it."""

from __future__ import annotations

import copy
import functools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.serving.observations import Observation, ObservationSpec

logger = logging.getLogger(__name__)

# Policies whose processors read the instruction; any processor step with a tokenizer counts too.
_LANGUAGE_POLICIES = {"labvla", "pi0", "pi05", "pi0_fast", "smolvla", "groot", "xvla", "eo1", "wall_x", "vla_jepa"}


def _auto_device(requested: str | None, config_device: str | None) -> str:
    device = requested or config_device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise LabVLAError(f"--device {device} requested but CUDA is not available here; pass --device cpu")
    return device


class PolicyRunner:
    """A checkpoint + its pre/post processors; `infer` maps B observations to (B, T, A) float32 actions."""

    def __init__(self, path: str | Path, device: str | None = None, output_chunk_size: int | None = None):
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()
        path = str(path)
        local = Path(path).expanduser()
        if local.exists() and not (local / "config.json").is_file():
            raise LabVLAError(f"--policy.path {path} has no config.json; point it at a checkpoint's pretrained_model dir")
        if not local.exists() and (path.startswith(("/", ".", "~")) or path.count("/") > 1):
            raise LabVLAError(f"--policy.path {path} does not exist (and is not a Hub id 'owner/name')")
        t0 = time.perf_counter()
        cfg = PreTrainedConfig.from_pretrained(path)
        self.device = _auto_device(device, getattr(cfg, "device", None))
        cfg.device = self.device
        self.policy = get_policy_class(cfg.type).from_pretrained(path, config=cfg)
        self.policy.to(self.device).eval()
        override = {"device_processor": {"device": self.device}}
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            self.policy.config,
            pretrained_path=path,
            preprocessor_overrides=override,
            postprocessor_overrides={"device_processor": {"device": "cpu"}},
        )
        self.policy_type = cfg.type
        self.config = self.policy.config
        needs_task = cfg.type in _LANGUAGE_POLICIES or any(
            "token" in type(step).__name__.lower() for step in self.preprocessor.steps
        )
        self.spec = ObservationSpec.from_policy_config(self.policy.config, needs_task=needs_task)
        self.max_prompt_tokens, self._tokenizer = self._prompt_budget()
        # One warm-up pass fixes the real output shape (after the postprocessor, e.g. padding cut).
        self.output_chunk_size = None
        warm = self.infer([self.dummy_observation()])
        self.model_chunk_size, self.action_dim = int(warm.shape[1]), int(warm.shape[2])
        if output_chunk_size is not None and output_chunk_size > self.model_chunk_size:
            raise LabVLAError(
                f"--output-chunk-size {output_chunk_size} is more than the {self.model_chunk_size} actions this checkpoint predicts"
            )
        self.output_chunk_size = output_chunk_size
        self.chunk_size = output_chunk_size or self.model_chunk_size
        logger.info(
            "loaded %s (%s) on %s in %.1f s: inputs %s, actions %d x %d",
            path, cfg.type, self.device, time.perf_counter() - t0, self.spec.targets(), self.chunk_size, self.action_dim,
        )

    def _prompt_budget(self) -> tuple[int | None, Any]:
        """labvla's instruction budget in tokens and the tokenizer that counts them (None, None: no token cap).

        The model right-pads/cuts the instruction to this many tokens (the official server cuts silently);
        the server refuses longer prompts instead, so a client learns that its instruction was not read.
        Other policies tokenize a longer text built around the task (pi05 adds the state), so only the
        character cap applies to them.
        """
        tokenizer = getattr(getattr(self.policy, "backbone", None), "tokenizer", None)
        if self.policy_type != "labvla" or tokenizer is None:
            return None, None
        budget = self.config.max_prompt_tokens_with_state if self.config.mode == "fast_pretrain" else self.config.max_prompt_tokens
        # A copy: requests are checked on the event loop and decode threads while the model thread tokenizes
        # with its own padding/truncation settings, and a fast tokenizer must not be reconfigured under a
        # concurrent call ("Already borrowed").
        return int(budget), copy.deepcopy(tokenizer)

    @functools.lru_cache(maxsize=256)  # noqa: B019 - one runner per process; clients resend the same instruction
    def prompt_tokens(self, text: str) -> int:
        """How many tokens the checkpoint's tokenizer makes of `text` (as the model tokenizes it, uncut)."""
        return len(self._tokenizer(text)["input_ids"])

    def dummy_observation(self) -> Observation:
        return Observation(
            images={k: np.zeros((h, w, c), np.uint8) for k, (c, h, w) in self.spec.cameras.items()},
            vectors={k: np.zeros(s, np.float32) for k, s in self.spec.vectors.items()},
            task="warm up",
        )

    def metadata(self) -> dict[str, Any]:
        """Sent to every client on connect: the official LabVLA server's fields, then ours. No paths."""
        state = self.spec.vectors.get("observation.state") or next(iter(self.spec.vectors.values()), None)
        return {
            "policy_type": self.policy_type,
            "action_dim": self.action_dim,
            "chunk_size": self.chunk_size,
            "model_chunk_size": self.model_chunk_size,
            "output_chunk_size": self.chunk_size,
            "state_dim": int(state[-1]) if state else 0,
            "max_state_dim": getattr(self.config, "max_state_dim", None),
            "max_action_dim": getattr(self.config, "max_action_dim", None),
            "num_inference_steps": getattr(self.config, "num_inference_steps", None),
            "num_cameras": len(self.spec.cameras),
            "server": "labvla-serve",
            "device": self.device,
            "inputs": {k: list(v) for k, v in {**self.spec.cameras, **self.spec.vectors}.items()},
            "needs_prompt": self.spec.needs_task,
            "max_prompt_tokens": self.max_prompt_tokens,
        }

    def _images(self, key: str, obs: list[Observation]) -> torch.Tensor:
        c, h, w = self.spec.cameras[key]
        out = []
        for o in obs:
            img = torch.from_numpy(np.array(o.images[key]))  # copy: received arrays are read-only views
            if img.shape[-1] == 3:  # HWC (OpenPI's and LeRobot robots' layout) -> CHW
                img = img.permute(2, 0, 1)
            img = img.to(torch.float32)
            if o.images[key].dtype == np.uint8:
                img = img / 255.0
            if tuple(img.shape[1:]) != (h, w):
                # As LeRobot's async server does: resize to the checkpoint's resolution.
                img = torch.nn.functional.interpolate(img[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            out.append(img)
        return torch.stack(out)

    def infer(self, obs: list[Observation]) -> np.ndarray:
        """B observations → (B, T, A) float32 actions in the robot's units.

        Requests that left out different cameras (masked slots) cannot share a batch: each set of
        cameras is one model call, and the rows go back in the order they came.
        """
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, o in enumerate(obs):
            groups.setdefault(tuple(k for k in self.spec.cameras if k in o.images), []).append(i)
        if len(groups) == 1:
            return self._infer(obs, next(iter(groups)))
        out: np.ndarray | None = None
        for cams, rows in groups.items():
            actions = self._infer([obs[i] for i in rows], cams)
            if out is None:
                out = np.empty((len(obs), *actions.shape[1:]), np.float32)
            out[rows] = actions
        return out

    @torch.inference_mode()
    def _infer(self, obs: list[Observation], cameras: tuple[str, ...]) -> np.ndarray:
        batch: dict[str, Any] = {k: self._images(k, obs) for k in cameras}
        for key in self.spec.vectors:
            batch[key] = torch.from_numpy(np.stack([o.vectors[key] for o in obs]))
        batch["task"] = [o.task for o in obs]
        batch = self.preprocessor(batch)
        chunk = self.policy.predict_action_chunk(batch)
        if chunk.ndim == 2:
            chunk = chunk.unsqueeze(0)
        if self.output_chunk_size:
            chunk = chunk[:, : self.output_chunk_size]
        # (B, T, A) through the postprocessor as one batch: unnormalizing broadcasts over T, and a
        # relative→absolute step adds each row's own (B, S) state (cached by the preprocessor) to its T actions.
        actions = self.postprocessor(chunk)
        return actions.to(torch.float32).cpu().numpy()
