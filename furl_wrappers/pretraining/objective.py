"""Training the offline VLM's frame encoder against the frozen MiniLM text space.

Objective (per step, on frames of non-MT10 tasks only), with ``s(o, l) = cos(f(o), Φ_L(l))``:

1. **Task contrast** (CLIP-style, image → text): late frames of successful episodes (progress ≥ 0.75, i.e. the
   task is nearly or fully done) must be closer to their own instruction than to the other 39:
   ``CE(s(o, ·) / τ, task)``. This ties "what the finished task looks like" to its words.
2. **Temporal ranking** (LIV/VIP-style): for two frames of the same successful episode, the later one must be
   closer to the instruction: ``softplus(-(s(o_late, l) − s(o_early, l)) / τ)``. This is what makes the raw
   cosine *rise along an episode* — FuRL's reward signal — rather than only separating tasks.
3. **Failure ranking**: late success frames must beat frames of failed episodes of the same task:
   ``softplus(-(s(o_success_late, l) − s(o_failed, l)) / τ)``.

The three are summed with equal weight, τ = 0.07 (CLIP's initial temperature). Frames get a random ±4 pixel
shift (DrQ-style) so the encoder does not key on exact pixel positions. Text embeddings never change, so a
held-out instruction lands where MiniLM puts it, and the image side is what has to generalise.

Example:
    >>> net, history = pretrain(dataset, steps=20, batch_size=8)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.utils import get_device

from furl_wrappers.encoders.offline import DEFAULT_NET_CONFIG, FrameEncoderNet, normalize_frames
from furl_wrappers.pretraining.data import PretrainDataset

__all__ = ["PretrainConfig", "PretrainSampler", "pretrain_losses", "pretrain"]


@dataclass
class PretrainConfig:
    """Hyperparameters of :func:`pretrain` (defaults: the shipped model's)."""

    steps: int = 3000
    batch_size: int = 48
    lr: float = 3e-4
    weight_decay: float = 1e-4
    temperature: float = 0.07
    late_progress: float = 0.75
    shift: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 2 or self.lr <= 0 or self.temperature <= 0 or self.shift < 0:
            raise ValueError(f"bad PretrainConfig {self}: need steps >= 1, batch_size >= 2, lr > 0, "
                             "temperature > 0, shift >= 0")


class PretrainSampler:
    """Index sampling for the three loss terms (numpy RNG, so a seed fixes the whole run)."""

    def __init__(self, data: PretrainDataset, late_progress: float, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        ok = ~data.failed
        self.success = np.flatnonzero(ok)
        if len(self.success) == 0:
            raise ValueError("the dataset has no successful episode: nothing to align to the task texts")
        self.late_by_task = {t: np.flatnonzero(ok & (data.task_index == t) & (data.progress >= late_progress))
                             for t in range(len(data.tasks))}
        self.late_by_task = {t: v for t, v in self.late_by_task.items() if len(v)}
        self.fail_by_task = {t: np.flatnonzero(data.failed & (data.task_index == t)) for t in self.late_by_task}
        self.fail_tasks = np.array([t for t, v in self.fail_by_task.items() if len(v)], dtype=np.int64)
        self.tasks_with_late = np.array(sorted(self.late_by_task), dtype=np.int64)
        # episode extents: frames of one episode are contiguous
        change = np.flatnonzero(np.diff(data.episode)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(data.episode)]])
        self.ep_start = np.repeat(starts, ends - starts)
        self.ep_end = np.repeat(ends, ends - starts)

    def late(self, tasks: np.ndarray) -> np.ndarray:
        return np.array([self.rng.choice(self.late_by_task[int(t)]) for t in tasks], dtype=np.int64)

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """Indices: ``nce`` (late frames), ``early``/``later`` (ordered same-episode pairs), ``fail``/``fail_late``."""
        nce = self.late(self.rng.choice(self.tasks_with_late, batch_size))
        a = self.rng.choice(self.success, batch_size)
        b = self.rng.integers(self.ep_start[a], self.ep_end[a])
        same = a == b
        b[same] = np.where(b[same] + 1 < self.ep_end[a[same]], b[same] + 1, b[same] - 1)
        out = {"nce": nce, "early": np.minimum(a, b), "later": np.maximum(a, b)}
        if len(self.fail_tasks):
            tasks = self.rng.choice(self.fail_tasks, batch_size)
            out["fail"] = np.array([self.rng.choice(self.fail_by_task[int(t)]) for t in tasks], dtype=np.int64)
            out["fail_late"] = self.late(tasks)
        return out


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of ``(N, C, S, S)`` by up to ``pad`` pixels (replicate padding)."""
    if pad == 0:
        return x
    n, _, s, _ = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, oy:oy + s, ox:ox + s] for i, (oy, ox) in enumerate(offsets.tolist())])


def pretrain_losses(emb: dict[str, torch.Tensor], text: torch.Tensor, task: dict[str, torch.Tensor],
                    temperature: float) -> dict[str, torch.Tensor]:
    """The three terms from unit-norm embeddings.

    Args:
        emb: ``nce``/``early``/``later`` (and optionally ``fail``/``fail_late``) image embeddings ``(B, D)``.
        text: all task texts ``(K, D)``, unit norm.
        task: task index ``(B,)`` for ``nce``, ``pair`` (the early/later pairs) and ``fail``.
        temperature: τ.

    Returns:
        ``{"contrast", "temporal", "failure", "total"}`` scalars (``failure`` is 0 without failed frames).
    """
    logits = emb["nce"] @ text.T / temperature
    contrast = F.cross_entropy(logits, task["nce"])
    own = text[task["pair"]]
    gap = ((emb["later"] - emb["early"]) * own).sum(-1)
    temporal = F.softplus(-gap / temperature).mean()
    if "fail" in emb:
        own_f = text[task["fail"]]
        gap_f = ((emb["fail_late"] - emb["fail"]) * own_f).sum(-1)
        failure = F.softplus(-gap_f / temperature).mean()
    else:
        failure = torch.zeros((), device=text.device)
    return {"contrast": contrast, "temporal": temporal, "failure": failure,
            "total": contrast + temporal + failure}


def pretrain(data: PretrainDataset, text_embeddings: torch.Tensor, config: Optional[PretrainConfig] = None, *,
             net_config: Optional[dict[str, Any]] = None, device: Union[str, torch.device] = "auto",
             log_every: int = 100,
             callback: Optional[Callable[[int, dict[str, float]], None]] = None) -> tuple[FrameEncoderNet, list]:
    """Train a :class:`FrameEncoderNet` on ``data``.

    Args:
        data: frames and labels (:func:`~furl_wrappers.pretraining.data.generate_dataset`).
        text_embeddings: ``(len(data.tasks), 384)`` unit-norm MiniLM embeddings of ``data.texts``.
        config: hyperparameters.
        net_config: :class:`FrameEncoderNet` arguments (``input_size`` must match the data's frames).
        device: torch device or ``"auto"``.
        log_every: average losses over this many steps for the history.
        callback: called as ``callback(step, mean_losses)`` every ``log_every`` steps.

    Returns:
        ``(net in eval mode on CPU, history)`` — history is a list of ``{"step", "contrast", ...}`` dicts.
    """
    config = config or PretrainConfig()
    net_config = {**DEFAULT_NET_CONFIG, **(net_config or {})}
    if net_config["input_size"] != data.frames.shape[-1]:
        raise ValueError(f"net input_size {net_config['input_size']} != dataset frame size {data.frames.shape[-1]}")
    if text_embeddings.shape != (len(data.tasks), net_config["out_dim"]):
        raise ValueError(f"text_embeddings must be ({len(data.tasks)}, {net_config['out_dim']}), "
                         f"got {tuple(text_embeddings.shape)}")
    device = get_device(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = FrameEncoderNet(**net_config).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = PretrainSampler(data, config.late_progress, config.seed)
    frames = torch.from_numpy(data.frames)
    task_index = torch.from_numpy(data.task_index.astype(np.int64))
    text = text_embeddings.to(device)
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}
    for step in range(1, config.steps + 1):
        idx = sampler.sample(config.batch_size)
        names = list(idx)
        flat = torch.from_numpy(np.concatenate([idx[k] for k in names]))
        x = random_shift(normalize_frames(frames[flat]), config.shift, generator).to(device)
        out = net(x).split(config.batch_size)
        emb = dict(zip(names, out))
        task = {"nce": task_index[idx["nce"]], "pair": task_index[idx["early"]]}
        if "fail" in idx:
            task["fail"] = task_index[idx["fail"]]
        losses = pretrain_losses(emb, text, {k: v.to(device) for k, v in task.items()}, config.temperature)
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if step % log_every == 0 or step == config.steps:
            n = log_every if step % log_every == 0 else step % log_every
            entry = {"step": step, **{k: v / n for k, v in running.items()}}
            history.append(entry)
            running = {}
            if callback is not None:
                callback(step, entry)
    return net.cpu().eval().requires_grad_(False), history
