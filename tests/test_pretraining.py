"""Offline-VLM pretraining: data only from non-MT10 tasks, correct labels, a tiny run lowers the loss, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import furl_wrappers
from furl_wrappers.encoders import make_encoder
from furl_wrappers.encoders.offline import load_offline_vlm
from furl_wrappers.pretraining import (
    PRETRAIN_TASKS,
    PretrainConfig,
    PretrainDataset,
    check_pretrain_tasks,
    generate_dataset,
    pretrain,
    pretrain_losses,
)


@pytest.fixture(scope="module")
def small_data() -> PretrainDataset:
    # reach-wall's expert succeeds within ~50 steps; 60-step failures keep this fast
    return generate_dataset(["reach-wall", "door-close"], expert_episodes=2, failed_episodes=1, every=5,
                            max_steps=60, image_size=96, input_size=32)


def test_pretrain_tasks_are_the_forty_outside_mt10() -> None:
    assert len(PRETRAIN_TASKS) == 40 and not set(PRETRAIN_TASKS) & set(furl_wrappers.MT10_TASKS)
    assert set(PRETRAIN_TASKS) | set(furl_wrappers.MT10_TASKS) == set(furl_wrappers.ALL_TASKS)
    assert check_pretrain_tasks(None) == list(PRETRAIN_TASKS)
    for mt10 in furl_wrappers.MT10_TASKS:
        with pytest.raises(ValueError, match="held out"):
            check_pretrain_tasks(["reach-wall", mt10])
    with pytest.raises(ValueError, match="at least one"):
        check_pretrain_tasks([])


def test_generated_episodes_and_labels(small_data: PretrainDataset) -> None:
    d = small_data
    assert d.tasks == ["reach-wall-v3", "door-close-v3"] and d.texts[0] == furl_wrappers.instruction("reach-wall")
    assert d.frames.dtype == np.uint8 and d.frames.shape[1:] == (3, 32, 32)
    assert len({len(d.frames), len(d.task_index), len(d.episode), len(d.step), len(d.progress), len(d.failed)}) == 1
    assert sorted(set(d.episode.tolist())) == list(range(6))  # 3 episodes per task
    for e in range(6):
        m = d.episode == e
        assert len(set(d.task_index[m].tolist())) == 1 and np.all(np.diff(d.step[m]) > 0) and d.step[m][0] == 0
        if d.failed[m][0]:
            assert np.all(d.progress[m] == -1) and d.step[m][-1] == 60
        else:  # progress reaches exactly 1 at the first-success frame, ends at most 10 steps later
            p = d.progress[m]
            assert p[0] == 0 and np.any(p == 1.0) and np.all(np.diff(p) > 0)
            first = d.step[m][p == 1.0][0]
            assert d.step[m][-1] <= first + 10
    assert d.episode_count["success"] >= 2  # at least the expert episodes of reach-wall
    assert d.frames.std() > 5  # rendered scenes, not blank frames
    # deterministic for a seed
    again = generate_dataset(["reach-wall"], expert_episodes=2, failed_episodes=1, every=5, max_steps=60,
                             image_size=96, input_size=32)
    m = small_data.task_index == 0
    assert np.array_equal(again.frames, small_data.frames[m])


def test_dataset_round_trip_and_mt10_cache_refused(small_data: PretrainDataset, tmp_path: Path) -> None:
    path = small_data.save(tmp_path / "d.npz")
    back = PretrainDataset.load(path)
    assert back.tasks == small_data.tasks and np.array_equal(back.frames, small_data.frames)
    bad = PretrainDataset(**{k: getattr(small_data, k) for k in ("frames", "task_index", "episode", "step",
                                                                  "progress", "failed")},
                          tasks=["reach-wall-v3", "drawer-open-v3"], texts=small_data.texts)
    bad.save(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="held out"):
        PretrainDataset.load(tmp_path / "bad.npz")


def test_losses_by_hand() -> None:
    text = torch.eye(2, 4)  # task 0 → e0, task 1 → e1
    emb = {"nce": torch.tensor([[1.0, 0, 0, 0]]), "early": torch.tensor([[0.0, 0, 1, 0]]),
           "later": torch.tensor([[0.6, 0, 0.8, 0]]), "fail": torch.tensor([[0.0, 1, 0, 0]]),
           "fail_late": torch.tensor([[0.0, 0.5, 0, 0]])}
    task = {"nce": torch.tensor([0]), "pair": torch.tensor([0]), "fail": torch.tensor([1])}
    out = pretrain_losses(emb, text, task, temperature=0.5)
    # contrast: CE over logits [2, 0] for class 0
    assert float(out["contrast"]) == pytest.approx(float(np.log1p(np.exp(-2.0))), abs=1e-6)
    # temporal: gap 0.6 → softplus(-1.2)
    assert float(out["temporal"]) == pytest.approx(float(np.log1p(np.exp(-1.2))), abs=1e-6)
    # failure: gap 0.5 - 1 = -0.5 → softplus(1.0)
    assert float(out["failure"]) == pytest.approx(float(np.log1p(np.exp(1.0))), abs=1e-6)
    assert float(out["hard"]) == 0.0
    assert float(out["total"]) == pytest.approx(float(out["contrast"] + out["temporal"] + out["failure"]))
    # hard negative: a sibling's finished frame [0.8, 0.6, 0, 0] against task 0's frame, for task 0's text:
    # gap 1 - 0.8 = 0.2 → softplus(-0.4)
    out = pretrain_losses({**emb, "hard": torch.tensor([[0.8, 0.6, 0, 0]])}, text, task, temperature=0.5)
    assert float(out["hard"]) == pytest.approx(float(np.log1p(np.exp(-0.4))), abs=1e-6)
    assert float(out["total"]) == pytest.approx(float(out["contrast"] + out["temporal"] + out["failure"]
                                                      + out["hard"]))


def test_sampler_draws_hard_negatives_from_scene_siblings(small_data: PretrainDataset) -> None:
    from furl_wrappers.pretraining.objective import PretrainSampler

    # door-close's only sibling present is door-lock; reach-wall has none here, so any other task
    data = PretrainDataset(*(np.concatenate([getattr(small_data, k)] * 2) for k in (
        "frames", "task_index", "episode", "step", "progress", "failed")), tasks=small_data.tasks,
        texts=small_data.texts)
    data.task_index[len(small_data):] += 2
    data.episode[len(small_data):] += 1000
    three = PretrainDataset(data.frames, data.task_index, data.episode, data.step, data.progress, data.failed,
                            tasks=["reach-wall-v3", "door-close-v3", "basketball-v3", "door-lock-v3"],
                            texts=["a", "b", "c", "d"])
    sampler = PretrainSampler(three, late_progress=0.75, seed=0)
    idx = sampler.sample(64, hard_negatives=True)
    nce_task, hard_task = three.task_index[idx["nce"]], three.task_index[idx["hard"]]
    assert set(hard_task[nce_task == 1].tolist()) == {3} and set(hard_task[nce_task == 3].tolist()) == {1}
    assert not np.any(hard_task == nce_task)
    assert np.all(three.progress[idx["hard"]] >= 0.75) and not three.failed[idx["hard"]].any()
    assert "hard" not in sampler.sample(4)


def test_subset_and_episodes(small_data: PretrainDataset) -> None:
    sub = small_data.subset(["door-close-v3"])
    assert sub.tasks == ["door-close-v3"] and set(sub.task_index.tolist()) == {0}
    assert len(sub) == int(np.sum(small_data.task_index == 1))
    episodes = sub.episodes(np.arange(len(sub))[:, None].astype(np.float32))
    assert list(episodes) == ["door-close-v3"] and sum(len(e["embeddings"]) for e in episodes["door-close-v3"]) \
        == len(sub)
    for ep in episodes["door-close-v3"]:
        assert np.all(np.diff(ep["embeddings"][:, 0]) == 1)  # one episode's frames, in order
    assert small_data.subset(["door-close"]).tasks == ["door-close-v3"]  # canonicalised
    for bad in (["basketball-v3"], [], ["door-close-v3", "door-close"]):  # absent, empty, repeated
        with pytest.raises(ValueError, match="subset needs distinct tasks of this dataset"):
            small_data.subset(bad)


def test_tiny_training_run_lowers_the_loss_and_is_seeded(small_data: PretrainDataset) -> None:
    text = torch.nn.functional.normalize(torch.randn(2, 384, generator=torch.Generator().manual_seed(0)), dim=1)
    text = torch.cat([text, torch.nn.functional.normalize(text + 0.1, dim=1)])  # two phrasings per task
    text_task = torch.tensor([0, 1, 0, 1])
    config = PretrainConfig(steps=120, batch_size=8, seed=3, hard_negatives=True, text_adapter=32)
    net, adapter, history = pretrain(small_data, text, config, text_task=text_task, net_config={"input_size": 32},
                                     device="cpu", log_every=20)
    assert [h["step"] for h in history] == list(range(20, 121, 20))
    assert history[-1]["total"] < 0.7 * history[0]["total"], history
    assert history[-1]["hard"] > 0 and adapter is not None and adapter.mlp[2].weight.abs().sum() > 0
    net2, adapter2, _ = pretrain(small_data, text, config, text_task=text_task, net_config={"input_size": 32},
                                 device="cpu", log_every=20)
    for a, b in zip([*net.state_dict().values(), *adapter.state_dict().values()],
                    [*net2.state_dict().values(), *adapter2.state_dict().values()]):
        assert torch.equal(a, b)
    # without an adapter, paraphrases or hard negatives: the version-1 objective
    plain = PretrainConfig(steps=2, batch_size=8, text_adapter=0, paraphrases=False, hard_negatives=False)
    _, none, hist = pretrain(small_data, text[:2], plain, net_config={"input_size": 32}, device="cpu", log_every=1)
    assert none is None and hist[-1]["hard"] == 0.0
    with pytest.raises(ValueError, match="text_task"):
        pretrain(small_data, text, config, text_task=torch.tensor([0, 0, 0, 0]), net_config={"input_size": 32},
                 device="cpu")
    with pytest.raises(ValueError, match="input_size"):
        pretrain(small_data, text, config, net_config={"input_size": 64}, device="cpu")
    with pytest.raises(ValueError, match="text_embeddings"):
        pretrain(small_data, text[:1], config, net_config={"input_size": 32}, device="cpu")
    for bad in ({"steps": 0}, {"text_adapter": -1}, {"failure_progress": 1.5}, {"late_progress": -0.1}):
        with pytest.raises(ValueError, match="PretrainConfig"):
            PretrainConfig(**bad)


def test_cli_pretrain_vlm_writes_a_loadable_checkpoint(tmp_path: Path, capsys) -> None:
    from furl_wrappers.cli import main

    out = tmp_path / "vlm.pt"
    args = ["pretrain-vlm", "--out", str(out), "--tasks", "reach-wall", "--expert-episodes", "1",
            "--failed-episodes", "1", "--every", "10", "--steps", "5", "--batch-size", "4", "--input-size", "32",
            "--data-cache", str(tmp_path / "data.npz"), "--device", "cpu", "--text-adapter", "16"]
    assert main(args) == 0
    net, adapter, meta = load_offline_vlm(out)
    assert meta["tasks"] == ["reach-wall-v3"] and meta["config"]["steps"] == 5 and len(meta["history"]) == 1
    assert adapter is not None and meta["instructions"] == 5  # the instruction and its four paraphrases
    enc = make_encoder(f"furl-mw-vlm:{out}", device="cpu")
    assert enc.encode_images(np.zeros((2, 64, 64, 3), np.uint8)).shape == (2, 384)
    # the text goes through the trained adapter
    raw = enc.text_encoder.encode(["Reach a goal position."])
    torch.testing.assert_close(enc.encode_text(["Reach a goal position."]), adapter(raw))
    # no clobbering; the cached data is reused; MT10 refused before anything runs
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0 and "loaded" in capsys.readouterr().out
    assert main([a if a != "1" else "2" for a in args] + ["--overwrite"]) == 2  # 2 + 2 episodes: not this cache
    assert "episodes per task" in capsys.readouterr().err
    assert main(["pretrain-vlm", "--out", str(tmp_path / "x.pt"), "--tasks", "drawer-open"]) == 2
    assert "held out" in capsys.readouterr().err
    assert main(["pretrain-vlm", "--out", str(tmp_path / "x.pt"), "--text-adapter", "-1"]) == 2
    assert "text_adapter >= 0" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_validation_tasks_are_held_out_of_training_and_scored(tmp_path: Path) -> None:
    from furl_wrappers.pretraining import run_pretraining

    kwargs = dict(expert_episodes=1, failed_episodes=1, every=10, input_size=32, device="cpu",
                  config=PretrainConfig(steps=3, batch_size=4), say=lambda line: None)
    for bad in (["reach-wall", "door-close"], ["basketball"]):
        with pytest.raises(ValueError, match="some, not all"):
            run_pretraining(tmp_path / "x.pt", tasks=["reach-wall", "door-close"], val_tasks=bad, **kwargs)
    with pytest.raises(ValueError, match="held out"):
        run_pretraining(tmp_path / "x.pt", tasks=["reach-wall", "door-close"], val_tasks=["drawer-open"], **kwargs)
    assert not (tmp_path / "x.pt").exists()
    meta = run_pretraining(tmp_path / "v.pt", tasks=["reach-wall", "door-close"], val_tasks=["door-close"], **kwargs)
    assert meta["tasks"] == ["reach-wall-v3"] and meta["val_tasks"] == ["door-close-v3"]
    assert meta["instructions"] == 5  # reach-wall's instruction and paraphrases only
    v = meta["validation"]
    assert set(v) >= {"top1", "matched_auc", "median_success_auc", "median_spearman", "rank"}
    rank = v["rank"]["door-close-v3"]  # one task: its own instruction is the only one (NaN without a success)
    assert list(v["rank"]) == ["door-close-v3"] and (rank == 1 or np.isnan(rank))
    _, _, saved = load_offline_vlm(tmp_path / "v.pt")
    assert saved["val_tasks"] == ["door-close-v3"] and set(saved["validation"]) == set(v)
