"""Training data for the offline VLM: labelled frame sequences from the 40 Meta-World tasks outside MT10.

Per task and episode, Meta-World's scripted expert (with Gaussian action noise of a per-episode scale) or a
failing policy acts in a fixed-goal instance whose object/goal positions come from a per-episode seed. Frames
are rendered on the same fast path, camera and size as :class:`~furl_wrappers.wrappers.FuzzyVLMRewardWrapper`
uses (``corner2``, 224²), then resized exactly as :class:`~furl_wrappers.encoders.offline.OfflineVLMEncoder`
resizes them, and stored as uint8 ``(3, S, S)``.

Episodes are labelled by their outcome, not by the policy that produced them: ``success`` episodes stop ten
steps after the first success; anything that never succeeds is ``failed``. Policies: ``expert`` (noise 0.1 to
0.4), ``random`` (uniform actions) and ``perturbed`` (the expert under noise 1.0).

MT10 tasks are refused: they are the evaluation tasks and must stay unseen.

Example:
    >>> data = generate_dataset(["reach-wall"], expert_episodes=1, failed_episodes=1, every=10)  # doctest: +SKIP
    >>> data.frames.shape[1:], data.tasks  # doctest: +SKIP
    ((3, 64, 64), ['reach-wall-v3'])
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from furl_wrappers._atomic import atomic_write
from furl_wrappers.tasks import ALL_TASKS, MT10_TASKS, canonical_task, instruction

__all__ = ["DATA_DEFAULTS", "PRETRAIN_TASKS", "PretrainDataset", "check_pretrain_tasks", "rollout_episode",
           "generate_dataset"]

#: the 40 tasks the offline VLM is trained on (all of Meta-World minus MT10), sorted
PRETRAIN_TASKS: tuple[str, ...] = tuple(sorted(t for t in ALL_TASKS if t not in MT10_TASKS))

_KIND_CODES = {"success": 0, "failed": 1}

#: the shipped model's data: episodes per task (expert, failing policies) and the frame stride
DATA_DEFAULTS: dict[str, int] = {"expert_episodes": 20, "failed_episodes": 6, "every": 2}


def check_pretrain_tasks(tasks: Sequence[str] | None) -> list[str]:
    """Canonical task ids (default: :data:`PRETRAIN_TASKS`); ``ValueError`` for an MT10 task or an empty list."""
    if tasks is None:
        return list(PRETRAIN_TASKS)
    out = [canonical_task(t) for t in tasks]
    if not out:
        raise ValueError("tasks must name at least one Meta-World task outside MT10")
    held_out = [t for t in out if t in MT10_TASKS]
    if held_out:
        raise ValueError(f"{held_out} are MT10 tasks, held out for evaluation; train on tasks outside MT10 "
                         f"(furl_wrappers.pretraining.PRETRAIN_TASKS, {len(PRETRAIN_TASKS)} tasks)")
    return list(dict.fromkeys(out))


@dataclass
class PretrainDataset:
    """Frames ``(M, 3, S, S)`` uint8 with per-frame labels, all arrays of length M.

    Attributes:
        frames: resized frames.
        task_index: index into ``tasks``.
        episode: global episode id.
        step: env step (1-based) after which the frame was rendered.
        progress: ``step / first_success_step`` for success episodes (> 1 after the success), -1 for failed ones.
        failed: whether the frame's episode failed.
        tasks: task ids; ``texts``: their instructions.
    """

    frames: np.ndarray
    task_index: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    progress: np.ndarray
    failed: np.ndarray
    tasks: list[str]
    texts: list[str]

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def episode_count(self) -> dict[str, int]:
        """Number of success and failed episodes."""
        eps = {int(e): bool(f) for e, f in zip(self.episode, self.failed)}
        return {"success": sum(not f for f in eps.values()), "failed": sum(eps.values())}

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` atomically."""
        return atomic_write(path, lambda handle: np.savez(
            handle, frames=self.frames, task_index=self.task_index, episode=self.episode, step=self.step,
            progress=self.progress, failed=self.failed, tasks=np.array(self.tasks), texts=np.array(self.texts)))

    def subset(self, tasks: Sequence[str]) -> PretrainDataset:
        """The frames of ``tasks`` only (in that order; task indices renumbered, episodes kept).

        Raises:
            ValueError: for an empty list, a repeated task or one this dataset lacks.
        """
        tasks = [canonical_task(t) for t in tasks]
        missing = [t for t in tasks if t not in self.tasks]
        if not tasks or missing or len(set(tasks)) != len(tasks):
            raise ValueError(f"subset needs distinct tasks of this dataset, got {tasks} (it has {self.tasks})")
        old = np.array([self.tasks.index(t) for t in tasks])
        keep = np.isin(self.task_index, old)
        remap = np.full(len(self.tasks), -1, np.int16)
        remap[old] = np.arange(len(tasks))
        return PretrainDataset(self.frames[keep], remap[self.task_index[keep]], self.episode[keep], self.step[keep],
                               self.progress[keep], self.failed[keep], list(tasks),
                               [self.texts[i] for i in old])

    def episodes(self, embeddings: np.ndarray) -> dict[str, list[dict[str, np.ndarray]]]:
        """Per task, its episodes as ``{"embeddings", "success"}`` for
        :func:`~furl_wrappers.pretraining.evaluation.zero_shot_metrics` (success = at or after the first success).

        Args:
            embeddings: ``(len(self), D)`` one per frame.
        """
        out: dict[str, list[dict[str, np.ndarray]]] = {t: [] for t in self.tasks}
        for e in np.unique(self.episode):
            rows = np.flatnonzero(self.episode == e)
            out[self.tasks[int(self.task_index[rows[0]])]].append(
                {"embeddings": embeddings[rows], "success": self.progress[rows] >= 1.0})
        return out

    @classmethod
    def load(cls, path: str | Path) -> PretrainDataset:
        with np.load(path) as z:
            data = cls(z["frames"], z["task_index"], z["episode"], z["step"], z["progress"], z["failed"],
                       [str(t) for t in z["tasks"]], [str(t) for t in z["texts"]])
        check_pretrain_tasks(data.tasks)
        return data


def rollout_episode(task: str, policy_kind: str, env_seed: int, rng: np.random.Generator, *,
                    noise: float = 0.1, max_steps: int = 300, every: int = 2, image_size: int = 224,
                    input_size: int = 64, camera: str = "corner2") -> dict:
    """Run one episode and keep every ``every``-th frame (plus the first-success frame).

    Returns:
        dict with ``frames`` uint8 ``(T, 3, S, S)``, ``step`` ``(T,)``, ``first_success`` (step or -1).
    """
    from furl_wrappers.encoders.offline import resize_frames
    from furl_wrappers.scripted import run_scripted_episode, scripted_policy

    if policy_kind not in ("expert", "random", "perturbed"):
        raise ValueError(f"policy_kind must be 'expert', 'random' or 'perturbed', got {policy_kind!r}")
    policy = scripted_policy(task, "random" if policy_kind == "random" else "expert",
                             noise=1.0 if policy_kind == "perturbed" else noise, rng=rng)
    episode = run_scripted_episode(task, env_seed, policy, max_steps=max_steps, camera=camera, image_size=image_size,
                                   render=every, stop_after_success=10)
    small = resize_frames(torch.as_tensor(episode.frames), input_size).numpy()
    return {"frames": small, "step": episode.frame_steps.astype(np.int32), "first_success": episode.first_success}


def _task_episodes(task: str, expert_episodes: int, failed_episodes: int, seed: int, kwargs: dict) -> list[dict]:
    """All episodes of one task (seeded by the task name, so tasks can run in any order or process)."""
    rng = np.random.default_rng([seed, zlib.crc32(task.encode())])
    plan = [("expert", float(rng.uniform(0.1, 0.4))) for _ in range(expert_episodes)]
    plan += [("random" if i % 2 == 0 else "perturbed", 0.0) for i in range(failed_episodes)]
    return [rollout_episode(task, kind, env_seed=seed * 1000 + k, rng=rng, noise=noise, **kwargs)
            for k, (kind, noise) in enumerate(plan)]


def generate_dataset(tasks: Sequence[str] | None = None, *,
                     expert_episodes: int = DATA_DEFAULTS["expert_episodes"],
                     failed_episodes: int = DATA_DEFAULTS["failed_episodes"], seed: int = 0,
                     every: int = DATA_DEFAULTS["every"], max_steps: int = 300, image_size: int = 224,
                     input_size: int = 64, camera: str = "corner2", workers: int = 1,
                     progress: Callable[[str, int, int], None] | None = None) -> PretrainDataset:
    """Roll out ``expert_episodes`` expert and ``failed_episodes`` failing-policy episodes per task.

    Deterministic for a given seed, whatever ``workers`` is (each task has its own RNG). Failing policies
    alternate ``random`` and ``perturbed``; every episode is labelled by its outcome. ``workers > 1`` renders
    tasks in that many spawned processes. ``progress(task, done, total)`` is called after each task.
    """
    tasks = check_pretrain_tasks(tasks)
    if expert_episodes < 1 or failed_episodes < 0 or every < 1 or workers < 1:
        raise ValueError(f"need expert_episodes >= 1, failed_episodes >= 0, every >= 1, workers >= 1; got "
                         f"{expert_episodes}, {failed_episodes}, {every}, {workers}")
    kwargs = dict(max_steps=max_steps, every=every, image_size=image_size, input_size=input_size, camera=camera)
    args = [(task, expert_episodes, failed_episodes, seed, kwargs) for task in tasks]
    if workers == 1:
        per_task = []
        for i, a in enumerate(args):
            per_task.append(_task_episodes(*a))
            if progress is not None:
                progress(a[0], i + 1, len(tasks))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_task_episodes, *a) for a in args]
            per_task = []
            for i, fut in enumerate(futures):
                per_task.append(fut.result())
                if progress is not None:
                    progress(tasks[i], i + 1, len(tasks))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("frames", "task_index", "episode", "step", "progress",
                                                          "failed")}
    episode_id = 0
    for ti, episodes in enumerate(per_task):
        for ep in episodes:
            n = len(ep["frames"])
            failed = ep["first_success"] < 0
            cols["frames"].append(ep["frames"])
            cols["task_index"].append(np.full(n, ti, np.int16))
            cols["episode"].append(np.full(n, episode_id, np.int32))
            cols["step"].append(ep["step"])
            cols["progress"].append(np.full(n, -1.0, np.float32) if failed
                                    else (ep["step"] / ep["first_success"]).astype(np.float32))
            cols["failed"].append(np.full(n, failed))
            episode_id += 1
    arrays = {k: np.concatenate(v) for k, v in cols.items()}
    return PretrainDataset(**arrays, tasks=tasks, texts=[instruction(t) for t in tasks])
