"""``furl report``: results of many runs in the paper's Table 1 layout, learning curves, and r_VLM curves.

- ``results.md``: methods × tasks, final success rate (%) as mean ± population std over seeds; where the runs used
  the paper's budget (1e6 steps, fixed goal) the paper's number is shown beside ours, otherwise the budget is stated.
  Then one row per run: its first successful evaluation (final step, and at any step), positive frames collected,
  when relay ended and the alignment stage reached (:func:`milestones`, from ``evaluations.csv`` and
  ``progress.csv``); then links to the PNGs below.
- ``learning_curves_<task>.png``: success rate vs steps, mean ± std band per method (from ``evaluations.csv``).
- ``rvlm_<method>_<task>_seed<seed>.png``: r_VLM along a scripted-expert episode with the run's heads before and
  after training (runs with learned heads).

Example:
    >>> report(["runs/furl/drawer-open/seed0", "runs/sac/drawer-open/seed0"], out="runs/report")  # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from furl_wrappers._atomic import atomic_write_text
from furl_wrappers.encoders import make_encoder
from furl_wrappers.goal_images import expert_rollout
from furl_wrappers.presets import get_preset
from furl_wrappers.registration import env_id
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.runs.run_dir import RunDir
from furl_wrappers.tasks import instruction

__all__ = ["PAPER_TABLE_1", "load_run", "results_table", "milestones", "milestones_table", "report"]

_TASK_ORDER = ["button-press-topdown", "door-open", "drawer-close", "drawer-open", "peg-insert-side", "pick-place",
               "push", "reach", "window-close", "window-open"]
#: The paper's Table 1 (success %, 5 seeds, 1e6 steps, fixed goal), by method name of zoo_configs.
PAPER_TABLE_1: dict[str, list[int]] = {
    "sac": [0, 50, 100, 20, 0, 0, 0, 60, 60, 80],
    "vlm_rm": [0] * 10,
    "vlm": [0, 0, 100, 0, 0, 0, 0, 80, 60, 40],
    "vlm_proj": [0, 0, 100, 0, 0, 0, 0, 80, 40, 20],
    "relay": [60, 80, 100, 40, 0, 0, 0, 100, 80, 80],
    "furl_no_goal": [80, 100, 100, 80, 0, 0, 40, 100, 100, 100],
    "furl": [100, 100, 100, 80, 0, 0, 80, 100, 100, 100],
}
_PAPER_BUDGET = 1_000_000


def _paper_method(method: str) -> str:
    """The paper's row of a method: itself, or the method a ``*_sbx`` one runs on the JAX backbone."""
    base = method.split(" (")[0]
    return base if base in PAPER_TABLE_1 else base.removesuffix("_sbx")


def load_run(run_dir: str | Path) -> dict[str, Any]:
    """A run's summary plus its evaluation curves (``curve_steps``, ``curve_success`` at the final step,
    ``curve_success_any_step``: arrays) and directory."""
    directory = RunDir(run_dir)
    run = directory.read_summary()
    rows = directory.evaluation_rows()
    steps = [int(r["step"]) for r in rows]
    run.update(dir=str(directory.path), curve_steps=np.array(steps),
               curve_success=np.array([r["success"] for r in rows]),
               curve_success_any_step=np.array([r["success_any_step"] for r in rows]))
    return run


def _encoder_label(run: dict[str, Any]) -> str:
    """The encoder a run used, short: its spec (``furl-mw-vlm``, ``random-clip:tiny``) or name; ``-`` for none."""
    return str(run.get("encoder_spec") or run.get("encoder") or "-")


def _row_labels(runs: Sequence[dict[str, Any]]) -> list[str]:
    """The method of each run; ``method (encoder)`` when one method appears with several encoders (e.g. FuRL
    with CLIP and with random-clip), so their numbers are never averaged together."""
    encoders: dict[str, set] = defaultdict(set)
    for run in runs:
        encoders[run["method"]].add(_encoder_label(run))
    return [run["method"] + (f" ({_encoder_label(run)})" if len(encoders[run["method"]]) > 1 else "")
            for run in runs]


def results_table(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per method, one column per task, ``mean ± std`` of final success in %."""
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    budgets: dict[str, set] = defaultdict(set)
    for run, method in zip(runs, _row_labels(runs)):
        task = run["task"].removesuffix("-v3") + ("" if run.get("goal", "fixed") == "fixed" else " (random goal)")
        cells[(method, task)].append(100.0 * float(run["final_success"] or 0.0))
        budgets[method].add((run["steps"], run.get("goal", "fixed")))
    tasks = sorted({t for _, t in cells}, key=lambda t: (_TASK_ORDER.index(t) if t in _TASK_ORDER else 99, t))
    def order(m: str) -> tuple[int, str]:
        base = _paper_method(m)
        return (list(PAPER_TABLE_1).index(base) if base in PAPER_TABLE_1 else 99, m)

    methods = sorted({m for m, _ in cells}, key=order)
    lines = ["| method | steps | " + " | ".join(tasks) + " | average |", "|" + "---|" * (len(tasks) + 3)]
    for method in methods:
        row, means = [], []
        paper = _paper_method(method)
        paper_ok = budgets[method] == {(_PAPER_BUDGET, "fixed")} and paper in PAPER_TABLE_1
        for task in tasks:
            values = cells.get((method, task))
            if not values:
                row.append("–")
                continue
            mean, std = float(np.mean(values)), float(np.std(values))
            means.append(mean)
            text = f"{mean:.0f} ± {std:.0f} (n={len(values)})"
            if paper_ok and task in _TASK_ORDER:
                text += f" [paper {PAPER_TABLE_1[paper][_TASK_ORDER.index(task)]}]"
            row.append(text)
        steps = ", ".join(f"{s:,}" for s, _ in sorted(budgets[method]))
        lines.append(f"| {method} | {steps} | " + " | ".join(row) + f" | {np.mean(means):.0f} |")
    note = ("Success rate (%) of the final evaluation, mean ± std over seeds (population std, ddof 0): success at "
            "the episode's final step, the paper's criterion (success at any step is in each run's evaluations.csv). "
            "The paper's Table 1 numbers (1e6 steps, fixed goal, 5 seeds) are shown in brackets only for runs with "
            "that budget.")
    used: dict[str, set] = defaultdict(set)
    pretrained_labels: dict[Any, str] = {True: "pretrained", False: "NOT pretrained"}
    for run, method in zip(runs, _row_labels(runs)):
        pretrained = pretrained_labels.get(run.get("encoder_pretrained"), "pretraining unknown")
        used[method].add(f"{_encoder_label(run)} ({pretrained}), image preset {run.get('image_preset') or 'fast'}"
                         if _encoder_label(run) != "-" else "no VLM")
    vlms = "; ".join(f"{m}: {' / '.join(sorted(used[m]))}" for m in methods)
    return note + "\n\n" + "\n".join(lines) + "\n\nVLM per row: " + vlms + "\n"


def milestones(run: dict[str, Any]) -> dict[str, Any]:
    """What a run reached and when (``None`` where it never did, or the run logged no such thing):

    ``first_success_step`` (the first evaluation with a success at the episode's final step, the paper's criterion),
    ``first_any_step_success_step`` (the first evaluation whose episode succeeded at some step: an earlier, weaker
    sign of progress), ``positive_frames`` (positives collected; runs with a VLM only),
    ``relay_off_step`` (the first logged step with relay off; logging is every few episodes, so an upper bound) and
    ``alignment_stage`` (the highest stage logged: 1 goal image, 2 ranking; relay methods only).
    """
    def first(success: np.ndarray) -> int | None:
        return next((int(step) for step, value in zip(run["curve_steps"], success) if value > 0), None)

    vlm = _encoder_label(run) != "-"  # a run without a VLM keeps no alignment store: nothing was counted
    out: dict[str, Any] = {"first_success_step": first(run["curve_success"]),
                           "first_any_step_success_step": first(run["curve_success_any_step"]),
                           "positive_frames": run.get("positive_count") if vlm else None, "relay_off_step": None,
                           "alignment_stage": None}
    progress = RunDir(run["dir"]).progress
    if not progress.is_file():
        return out
    import csv

    with open(progress, newline="") as handle:
        for row in csv.DictReader(handle):
            step, relay, stage = row.get("time/total_timesteps"), row.get("furl/relay_on"), row.get("furl/stage")
            if relay not in (None, "") and float(relay) == 0 and out["relay_off_step"] is None and step:
                out["relay_off_step"] = int(float(step))
            if stage not in (None, ""):
                out["alignment_stage"] = max(int(float(stage)), out["alignment_stage"] or 0)
    return out


def milestones_table(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per run with its :func:`milestones` (``–``: never, or not logged)."""
    lines = ["| method | task | seed | steps | final success | first successful evaluation | first success at any "
             "step | positive frames | relay off by | alignment stage |", "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:,}" if isinstance(value, int) else str(value)

    for run in sorted(runs, key=lambda r: (r["method"], r["task"], r["seed"])):
        m = milestones(run)
        lines.append(f"| {run['method']} | {run['task']} | {run['seed']} | {run.get('timesteps_done', run['steps']):,} "
                     f"| {100 * float(run['final_success'] or 0):.0f} % | {cell(m['first_success_step'])} | "
                     f"{cell(m['first_any_step_success_step'])} | "
                     f"{cell(m['positive_frames'])} | {cell(m['relay_off_step'])} | {cell(m['alignment_stage'])} |")
    return "\n".join(lines) + "\n"


def _plot_curves(runs: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_task: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for run, label in zip(runs, _row_labels(runs)):
        if len(run["curve_steps"]):
            by_task[env_id(run["task"], run.get("goal", "fixed")).removeprefix("furl/")][label].append(run)
    for task, methods in by_task.items():
        vlms = sorted({_encoder_label(r) for rs in methods.values() for r in rs} - {"-"})
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for method, method_runs in sorted(methods.items()):
            grid = np.unique(np.concatenate([r["curve_steps"] for r in method_runs]))
            values = np.stack([np.interp(grid, r["curve_steps"], r["curve_success"]) for r in method_runs])
            mean, std = values.mean(0), values.std(0)
            ax.plot(grid, mean, label=f"{method} (n={len(method_runs)})")
            ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("success rate")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(task + (f" — VLM: {', '.join(vlms)}" if vlms else ""), fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"learning_curves_{task}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _plot_rvlm(run: dict[str, Any], out: Path) -> Path | None:
    """r_VLM along a scripted-expert episode with the run's initial and final heads."""
    run_dir = RunDir(run["dir"])
    initial, final = run_dir.reward_initial, run_dir.reward_final
    config = run_dir.read_json(run_dir.config)
    learned = config.get("encoder_spec") and config.get("reward_mode") == "learned"
    if not (initial.exists() and final.exists() and learned):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    # the run's own pipeline: its image preset, frame size and task instance
    preset = get_preset(config.get("image_preset") or "fast")
    env_kwargs = config.get("env_kwargs") or config.get("spec", {}).get("env_kwargs", {})
    encoder = make_encoder(config["encoder_spec"], device="cpu", **preset.encoder_kwargs("cpu"))
    rollout = expert_rollout(run["task"], seed=int(config.get("train_instance_seed", 0)),
                             image_size=int(env_kwargs.get("image_size", preset.image_size)),
                             render_quality=env_kwargs.get("render_quality", preset.render_quality),
                             keep_frames=True, steps_after_success=10)
    assert rollout.frames is not None  # keep_frames=True
    frames, first_success = rollout.frames, rollout.success_step - 1
    embeddings = torch.cat([encoder.encode_images(frames[i:i + 32]) for i in range(0, len(frames), 32)])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for label, path in (("before training (initial heads)", initial), ("after training", final)):
        state = torch.load(path, weights_only=True)
        model = RewardModel(state["text_embedding"], mode=config["reward_mode"], device="cpu",
                            baseline_embedding=state.get("baseline_embedding"), alpha=config.get("reward_alpha", 0.0))
        model.load_state_dict(state)
        ax.plot(model.reward(embeddings).numpy(), label=label)
    ax.axvline(first_success, color="gray", linestyle="--", label="first success")
    ax.set_xlabel("step of a scripted-expert episode")
    ax.set_ylabel("r_VLM")
    text = config.get("instruction") or instruction(run["task"])
    pretrained = "pretrained" if config.get("encoder_pretrained") else "NOT pretrained"
    ax.set_title(f"{run['method']} {run['task']} seed {run['seed']}: \"{text}\"\nVLM {config['encoder_spec']} "
                 f"({pretrained}), image preset {preset.name}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"rvlm_{run['method']}_{run['task']}_seed{run['seed']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report(run_dirs: Sequence[str | Path], out: str | Path, plots: bool = True) -> dict[str, Any]:
    """Write ``results.md`` and the PNGs for ``run_dirs`` into ``out``; returns what was written."""
    runs = [load_run(d) for d in run_dirs]
    if not runs:
        raise ValueError("report needs at least one run directory")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(runs)
    per_run = ("\n## Per run\n\nFirst successful evaluation (success at the episode's final step; each evaluation's "
               "episodes as in the run's config), first evaluation with success at any step of the episode, positive "
               "frames collected (relay ends at its threshold), the first logged step with relay off, the highest "
               "alignment stage logged.\n\n" + milestones_table(runs))
    written: dict[str, Any] = {"table": out / "results.md", "markdown": table, "curves": [], "rvlm": []}
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("furl report: matplotlib is not installed, so no PNGs were drawn: pip install 'furl_wrappers[plots]'")
        else:
            written["curves"] = _plot_curves(runs, out)
            written["rvlm"] = [p for p in (_plot_rvlm(run, out) for run in runs) if p is not None]
    pngs = written["curves"] + written["rvlm"]
    figures = ("\n## Curves\n\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n") if pngs else ""
    atomic_write_text(out / "results.md", "# Results\n\n" + table + per_run + figures)
    return written
