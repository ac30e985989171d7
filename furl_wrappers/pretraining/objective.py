"""Training the offline VLM's frame encoder against the frozen MiniLM text space.

Objective (per step, on frames of non-MT10 tasks only), with ``s(o, l) = cos(f(o), Φ_L(l))``:

1. **Task contrast** (CLIP-style, image → text): late frames of successful episodes (progress ≥ 0.75, i.e. the
   task is nearly or fully done) must be closer to their own instruction than to the other 39:
   ``CE(s(o, ·) / τ, task)``. This ties "what the finished task looks like" to its words.
2. **Temporal ranking** (LIV/VIP-style): for two frames of the same successful episode, the later one must be
   closer to the instruction: ``softplus(-(s(o_late, l) − s(o_early, l)) / τ)``. This is what makes the raw
   cosine *rise along an episode* — FuRL's reward signal — rather than only separating tasks.
3. **Failure ranking**: success frames at least ``failure_progress`` of the way to the first success must beat
   frames of failed episodes of the same task: ``softplus(-(s(o_success, l) − s(o_failed, l)) / τ)``.
4. **Hard negatives** (``hard_negatives``): a late frame of the task must beat a late frame of a task sharing its
   scene (:data:`~furl_wrappers.pretraining.instructions.SCENE_FAMILIES`; any other task when it has none) *for
   its own instruction*: ``softplus(-(s(o_late, l) − s(o_sibling_late, l)) / τ)`` — the frame-ranking
   direction FuRL's reward uses, on the pairs where only the instruction tells them apart.

The terms are summed with equal weight, τ = 0.07 (CLIP's initial temperature). Frames get a random ±4 pixel
shift (DrQ-style) so the encoder does not key on exact pixel positions. The sentence encoder stays frozen; with
``text_adapter > 0`` a small residual MLP on its embeddings (:class:`~furl_wrappers.encoders.offline.TextAdapter`)
trains with the frame encoder, and with paraphrases each step draws one phrasing per task, so the adapter learns
a map over wording rather than forty fixed points.

Example:
    >>> net, adapter, history = pretrain(dataset, text, PretrainConfig(steps=20))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.utils import get_device

from furl_wrappers.encoders.offline import DEFAULT_NET_CONFIG, FrameEncoderNet, TextAdapter, normalize_frames
from furl_wrappers.pretraining.data import PretrainDataset
from furl_wrappers.pretraining.instructions import scene_siblings

__all__ = ["PretrainConfig", "PretrainSampler", "pretrain_losses", "pretrain"]


@dataclass
class PretrainConfig:
    """Hyperparameters of :func:`pretrain` (defaults: the shipped model's)."""

    steps: int = 1000
    batch_size: int = 48
    lr: float = 3e-4
    weight_decay: float = 1e-4
    temperature: float = 0.07
    late_progress: float = 0.75
    #: success frames in the failure term are those at least this far along (1 = the first success)
    failure_progress: float = 0.75
    shift: int = 4
    seed: int = 0
    #: hidden width of the trainable text adapter; 0 keeps the sentence encoder's embeddings as they are
    text_adapter: int = 0
    #: draw one of each task's phrasings per step (needs the variants passed to :func:`pretrain`)
    paraphrases: bool = True
    #: the scene-sibling frame-ranking term
    hard_negatives: bool = False

    def __post_init__(self) -> None:
        if (self.steps < 1 or self.batch_size < 2 or self.lr <= 0 or self.temperature <= 0 or self.shift < 0
                or self.text_adapter < 0 or not 0 <= self.late_progress <= 1 or not 0 <= self.failure_progress <= 1):
            raise ValueError(f"bad PretrainConfig {self}: need steps >= 1, batch_size >= 2, lr > 0, "
                             "temperature > 0, shift >= 0, text_adapter >= 0, late_progress and failure_progress in "
                             "[0, 1] (1 = the first success)")


class PretrainSampler:
    """Index sampling for the loss terms (numpy RNG, so a seed fixes the whole run)."""

    def __init__(self, data: PretrainDataset, late_progress: float, seed: int,
                 failure_progress: float | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        ok = ~data.failed
        self.success = np.flatnonzero(ok)
        if len(self.success) == 0:
            raise ValueError("the dataset has no successful episode: nothing to align to the task texts")
        self.late_by_task = {t: np.flatnonzero(ok & (data.task_index == t) & (data.progress >= late_progress))
                             for t in range(len(data.tasks))}
        self.late_by_task = {t: v for t, v in self.late_by_task.items() if len(v)}
        self.fail_by_task = {t: np.flatnonzero(data.failed & (data.task_index == t)) for t in self.late_by_task}
        floor = late_progress if failure_progress is None else failure_progress
        self.beats_fail_by_task = {t: np.flatnonzero(ok & (data.task_index == t) & (data.progress >= floor))
                                   for t in self.late_by_task}
        self.fail_tasks = np.array([t for t, v in self.fail_by_task.items() if len(v)], dtype=np.int64)
        self.tasks_with_late = np.array(sorted(self.late_by_task), dtype=np.int64)
        # hard negatives: scene siblings with late frames, else every other task with late frames
        index = {task: i for i, task in enumerate(data.tasks)}
        self.siblings = {}
        for t in self.tasks_with_late:
            sib = [index[s] for s in scene_siblings(data.tasks[t]) if index.get(s) in self.late_by_task]
            self.siblings[int(t)] = np.array(sib or [u for u in self.tasks_with_late if u != t], dtype=np.int64)
        # episode extents: frames of one episode are contiguous
        change = np.flatnonzero(np.diff(data.episode)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [len(data.episode)]])
        self.ep_start = np.repeat(starts, ends - starts)
        self.ep_end = np.repeat(ends, ends - starts)

    def late(self, tasks: np.ndarray) -> np.ndarray:
        return np.array([self.rng.choice(self.late_by_task[int(t)]) for t in tasks], dtype=np.int64)

    def sample(self, batch_size: int, hard_negatives: bool = False) -> dict[str, np.ndarray]:
        """Indices: ``nce`` (late frames), ``early``/``later`` (ordered same-episode pairs), ``fail``/``fail_late``
        (when failed episodes exist) and ``hard`` (a scene sibling's late frame per ``nce`` frame)."""
        nce_tasks = self.rng.choice(self.tasks_with_late, batch_size)
        nce = self.late(nce_tasks)
        a = self.rng.choice(self.success, batch_size)
        b = self.rng.integers(self.ep_start[a], self.ep_end[a])
        same = a == b
        b[same] = np.where(b[same] + 1 < self.ep_end[a[same]], b[same] + 1, b[same] - 1)
        out = {"nce": nce, "early": np.minimum(a, b), "later": np.maximum(a, b)}
        if len(self.fail_tasks):
            tasks = self.rng.choice(self.fail_tasks, batch_size)
            out["fail"] = np.array([self.rng.choice(self.fail_by_task[int(t)]) for t in tasks], dtype=np.int64)
            out["fail_late"] = np.array([self.rng.choice(self.beats_fail_by_task[int(t)]) for t in tasks],
                                        dtype=np.int64)
        if hard_negatives and len(self.tasks_with_late) > 1:
            out["hard"] = self.late(np.array([self.rng.choice(self.siblings[int(t)]) for t in nce_tasks]))
        return out


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of ``(N, C, S, S)`` by up to ``pad`` pixels (replicate padding)."""
    if pad == 0:
        return x
    n, _, s, _ = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    return torch.stack([padded[i, :, oy:oy + s, ox:ox + s] for i, (oy, ox) in enumerate(offsets.tolist())])


def _rank(better: torch.Tensor, worse: torch.Tensor, text: torch.Tensor, temperature: float) -> torch.Tensor:
    """``mean softplus(-(s(better, l) − s(worse, l)) / τ)`` for rows of unit-norm embeddings and texts."""
    return F.softplus(-((better - worse) * text).sum(-1) / temperature).mean()


def pretrain_losses(emb: dict[str, torch.Tensor], text: torch.Tensor, task: dict[str, torch.Tensor],
                    temperature: float) -> dict[str, torch.Tensor]:
    """The loss terms from unit-norm embeddings.

    Args:
        emb: ``nce``/``early``/``later`` (and optionally ``fail``/``fail_late`` and ``hard``) image embeddings
            ``(B, D)``.
        text: all task texts ``(K, D)``, unit norm.
        task: task index ``(B,)`` for ``nce`` (and ``hard``, whose frames rank against ``nce``'s), ``pair`` (the
            early/later pairs) and ``fail``.
        temperature: τ.

    Returns:
        ``{"contrast", "temporal", "failure", "hard", "total"}`` scalars (``failure``/``hard`` are 0 without their
        frames).
    """
    zero = torch.zeros((), device=text.device)
    contrast = F.cross_entropy(emb["nce"] @ text.T / temperature, task["nce"])
    temporal = _rank(emb["later"], emb["early"], text[task["pair"]], temperature)
    failure = _rank(emb["fail_late"], emb["fail"], text[task["fail"]], temperature) if "fail" in emb else zero
    hard = _rank(emb["nce"], emb["hard"], text[task["nce"]], temperature) if "hard" in emb else zero
    return {"contrast": contrast, "temporal": temporal, "failure": failure, "hard": hard,
            "total": contrast + temporal + failure + hard}


def pretrain(data: PretrainDataset, text_embeddings: torch.Tensor, config: PretrainConfig | None = None, *,
             text_task: torch.Tensor | None = None, net_config: dict[str, Any] | None = None,
             device: str | torch.device = "auto", log_every: int = 100,
             callback: Callable[[int, dict[str, float]], None] | None = None,
             ) -> tuple[FrameEncoderNet, TextAdapter | None, list]:
    """Train a :class:`FrameEncoderNet` (and a :class:`TextAdapter` when ``config.text_adapter > 0``) on ``data``.

    Args:
        data: frames and labels (:func:`~furl_wrappers.pretraining.data.generate_dataset`).
        text_embeddings: ``(V, 384)`` unit-norm sentence embeddings of the instructions; without ``text_task``
            ``V == len(data.tasks)`` and row ``k`` is task ``k``'s.
        config: hyperparameters.
        text_task: ``(V,)`` task index of each row (several phrasings per task); with ``config.paraphrases`` each
            step draws one row per task, otherwise the first row of each task is used.
        net_config: :class:`FrameEncoderNet` arguments (``input_size`` must match the data's frames).
        device: torch device or ``"auto"``.
        log_every: average losses over this many steps for the history.
        callback: called as ``callback(step, mean_losses)`` every ``log_every`` steps.

    Returns:
        ``(net, adapter or None, history)``, modules in eval mode on CPU — history is a list of
        ``{"step", "contrast", ...}`` dicts.
    """
    config = config or PretrainConfig()
    net_config = {**DEFAULT_NET_CONFIG, **(net_config or {})}
    n_tasks = len(data.tasks)
    if net_config["input_size"] != data.frames.shape[-1]:
        raise ValueError(f"net input_size {net_config['input_size']} != dataset frame size {data.frames.shape[-1]}")
    if text_task is None:
        text_task = torch.arange(len(text_embeddings))
    text_task = torch.as_tensor(text_task, dtype=torch.int64)
    if (text_embeddings.ndim != 2 or text_embeddings.shape[1] != net_config["out_dim"]
            or text_task.shape != (len(text_embeddings),)
            or not torch.equal(torch.unique(text_task), torch.arange(n_tasks))):
        raise ValueError(f"text_embeddings must be (V, {net_config['out_dim']}) with text_task giving every one of "
                         f"the {n_tasks} tasks at least one row; got {tuple(text_embeddings.shape)} and text_task "
                         f"{tuple(text_task.shape)}")
    device = get_device(device)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = FrameEncoderNet(**net_config).to(device).train()
    adapter = TextAdapter(net_config["out_dim"], config.text_adapter).to(device) if config.text_adapter else None
    params = list(net.parameters()) + (list(adapter.parameters()) if adapter is not None else [])
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    sampler = PretrainSampler(data, config.late_progress, config.seed, config.failure_progress)
    rows_by_task = [np.flatnonzero(text_task.numpy() == k) for k in range(n_tasks)]
    first_rows = np.array([rows[0] for rows in rows_by_task])
    frames = torch.from_numpy(data.frames)
    task_index = torch.from_numpy(data.task_index.astype(np.int64))
    bank = text_embeddings.to(device)
    history: list[dict[str, float]] = []
    running: dict[str, float] = {}
    for step in range(1, config.steps + 1):
        idx = sampler.sample(config.batch_size, hard_negatives=config.hard_negatives)
        rows = (np.array([sampler.rng.choice(r) for r in rows_by_task]) if config.paraphrases else first_rows)
        text = bank[torch.from_numpy(rows)]
        if adapter is not None:
            text = adapter(text)
        names = list(idx)
        flat = torch.from_numpy(np.concatenate([idx[k] for k in names]))
        x = random_shift(normalize_frames(frames[flat]), config.shift, generator).to(device)
        emb = dict(zip(names, net(x).split(config.batch_size)))
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
    if adapter is not None:
        adapter = adapter.cpu().eval().requires_grad_(False)
    return net.cpu().eval().requires_grad_(False), adapter, history
