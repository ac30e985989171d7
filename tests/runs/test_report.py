"""furl report: the table and the PNGs hold the numbers of the runs' CSVs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from furl_wrappers.runs.report import PAPER_TABLE_1, load_run, milestones, milestones_table, report, results_table


def _fake_run(root: Path, method: str, task: str, seed: int, curve: list[tuple[int, float]], steps: int,
              any_step: list[float] | None = None) -> Path:
    """A finished run's files; ``any_step``: the evaluations' success-at-any-step (default: as ``curve``)."""
    run = root / method / task / f"seed{seed}"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({
        "method": method, "task": f"{task}-v3", "goal": "fixed", "seed": seed, "steps": steps,
        "final_success": curve[-1][1], "best_success": max(s for _, s in curve), "success_criterion": "final_step"}))
    (run / "config.json").write_text(json.dumps({"encoder_spec": None}))
    with open(run / "evaluations.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "success", "success_any_step", "mean_task_return", "wall_time_s"])
        for (step, success), success_any in zip(curve, any_step or [s for _, s in curve]):
            writer.writerow([step, success, success_any, -100.0, 1.0])
    return run


def test_table_numbers_and_paper_column(tmp_path: Path) -> None:
    runs = [
        _fake_run(tmp_path, "furl", "drawer-open", 0, [(500_000, 0.0), (1_000_000, 1.0)], 1_000_000),
        _fake_run(tmp_path, "furl", "drawer-open", 1, [(500_000, 0.0), (1_000_000, 0.0)], 1_000_000),
        _fake_run(tmp_path, "sac", "drawer-open", 0, [(1000, 0.0), (2000, 1.0)], 2000),
    ]
    table = results_table([load_run(r) for r in runs])
    furl_row = next(line for line in table.splitlines() if line.startswith("| furl "))
    assert "50 ± 50 (n=2)" in furl_row and f"[paper {PAPER_TABLE_1['furl'][3]}]" in furl_row
    sac_row = next(line for line in table.splitlines() if line.startswith("| sac "))
    assert "100 ± 0 (n=1)" in sac_row and "paper" not in sac_row and "2,000" in sac_row
    assert "recorded before final-step success" not in table  # no old-run label: old layouts are not read


def test_report_writes_table_and_curves(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    runs = [_fake_run(tmp_path / "r", "furl", "reach", s, [(100, 0.0), (200, float(s))], 200) for s in (0, 1)]
    written = report(runs, tmp_path / "out")
    text = (tmp_path / "out" / "results.md").read_text()
    assert text.count("| furl |") == 1 + 2  # the table's row, then one row per run
    assert [p.name for p in written["curves"]] == ["learning_curves_reach-v3.png"]
    assert text.endswith("## Curves\n\n![learning_curves_reach-v3](learning_curves_reach-v3.png)\n")
    from PIL import Image

    assert Image.open(written["curves"][0]).size[0] > 300


def test_report_on_a_real_run(tmp_path: Path) -> None:
    """furl train → furl report: the r_VLM curve is drawn from the run's own heads and encoder."""
    from furl_wrappers.runs.training import RunSpec, train_run

    run = train_run(RunSpec(method="furl", task="reach", steps=80, vlm="random-clip:tiny", out=str(tmp_path / "run"),
                            image_preset="fast",
                            device="cpu", eval_freq=40, env_kwargs={"image_size": 32, "max_episode_steps": 40},
                            hyperparams={"learning_starts": 40, "batch_size": 16}, quiet=True))
    written = report([run], tmp_path / "out")
    summary = json.loads((run / "summary.json").read_text())
    rows = list(csv.DictReader(open(run / "evaluations.csv")))
    assert float(rows[-1]["success"]) == summary["final_success"]
    assert "recorded before final-step success" not in written["markdown"]  # a new run says final step
    assert f"{100 * summary['final_success']:.0f} ± 0 (n=1)" in written["markdown"]
    assert [p.name for p in written["rvlm"]] == ["rvlm_furl_reach-v3_seed0.png"]
    assert "![rvlm_furl_reach-v3_seed0](rvlm_furl_reach-v3_seed0.png)" in (tmp_path / "out" / "results.md").read_text()
    assert "furl: random-clip:tiny (NOT pretrained), image preset fast" in written["markdown"]


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="summary.json"):
        report([tmp_path], tmp_path / "out")
    with pytest.raises(ValueError, match="at least one"):
        report([], tmp_path / "out")


def test_one_method_with_two_encoders_gets_two_rows(tmp_path: Path) -> None:
    a = _fake_run(tmp_path / "a", "furl", "drawer-open", 0, [(1000, 0.0), (2000, 1.0)], 2000)
    b = _fake_run(tmp_path / "b", "furl", "drawer-open", 0, [(1000, 0.0), (2000, 0.0)], 2000)
    for run, spec in ((a, "furl-mw-vlm"), (b, "random-clip:tiny")):
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "encoder_spec": spec}))
    table = results_table([load_run(a), load_run(b)])
    rows = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| furl")}
    assert "100 ± 0 (n=1)" in rows["| furl (furl-mw-vlm)"] and "0 ± 0 (n=1)" in rows["| furl (random-clip:tiny)"]
    # a single encoder keeps the plain method name
    assert "| furl | " in results_table([load_run(a)])


def test_sbx_methods_take_the_paper_row_of_their_method(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, "furl_sbx", "drawer-open", 0, [(1_000_000, 1.0)], 1_000_000)
    row = next(line for line in results_table([load_run(run)]).splitlines() if line.startswith("| furl_sbx "))
    assert f"[paper {PAPER_TABLE_1['furl'][3]}]" in row


def test_milestones_from_evaluations_and_progress(tmp_path: Path) -> None:
    run = _fake_run(tmp_path, "furl", "drawer-open", 2, [(10_000, 0.0), (20_000, 1.0), (30_000, 0.0)], 30_000,
                    any_step=[1.0, 1.0, 0.0])
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "positive_count": 2600, "timesteps_done": 30_000,
                                                  "encoder_spec": "furl-mw-vlm"}))
    with open(run / "progress.csv", "w", newline="") as handle:  # SB3's logger: keys appear as they are first logged
        writer = csv.writer(handle)
        writer.writerow(["time/total_timesteps", "furl/relay_on", "furl/stage"])
        for step, relay, stage in ((2000, 1, ""), (12_000, 1, 1), (24_000, 0, 2), (28_000, 0, 2)):
            writer.writerow([step, relay, stage])
    loaded = load_run(run)
    assert milestones(loaded) == {"first_success_step": 20_000, "first_any_step_success_step": 10_000,
                                  "positive_frames": 2600, "relay_off_step": 24_000, "alignment_stage": 2}
    line = milestones_table([loaded]).splitlines()[-1]
    assert line == "| furl | drawer-open-v3 | 2 | 30,000 | 0 % | 20,000 | 10,000 | 2,600 | 24,000 | 2 |"
    sac = _fake_run(tmp_path, "sac", "drawer-open", 0, [(10_000, 0.0)], 10_000)  # no VLM, no progress.csv
    summary = json.loads((sac / "summary.json").read_text())
    (sac / "summary.json").write_text(json.dumps({**summary, "positive_count": 0}))  # what furl train writes
    sac = load_run(sac)
    assert milestones(sac) == {"first_success_step": None, "first_any_step_success_step": None,
                               "positive_frames": None, "relay_off_step": None, "alignment_stage": None}
    assert milestones_table([sac]).splitlines()[-1].endswith("| 0 % | – | – | – | – | – |")
