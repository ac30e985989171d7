"""PixelReplayBuffer and VLMPixelReplayBuffer: stacks rebuilt bit-for-bit equal to SB3's ReplayBuffer (before and
after wrap-around, n_envs=2, episodes shorter and longer than the stack and the buffer), valid-row sampling,
memory per transition, VLM relabelling / episode labelling / task-reward view over pixel storage,
save_buffer/load_buffer round trips, and bad inputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer

from furl_wrappers.pixel_buffer import PixelReplayBuffer, VLMPixelReplayBuffer
from furl_wrappers.runs.buffer_file import load_buffer, save_buffer

K, H, W = 3, 8, 8  # frames per stack, frame side
OBS = spaces.Box(0, 255, (3 * K, H, W), np.uint8)
ACT = spaces.Box(-1, 1, (4,), np.float32)
N_ENVS = 2
SIZE = 40  # buffer_size: 20 rows of 2 envs
ROWS = SIZE // N_ENVS
D = 8  # embedding size
LENGTHS = (1, 2, 3, 4, 5, 7, 12, 25)  # shorter than the stack, longer than the buffer


class FrameStackStream:
    """Transitions of ``n_envs`` frame-stack envs as SB3 collects them: a reset observation repeats its first frame
    ``K`` times, ``next_obs`` is ``obs`` shifted by one frame plus a new random frame, episodes of random lengths
    end at different times per env (successful ones terminate with success on their last step, failed ones are
    truncated or terminated), and the next ``obs`` after an end is a fresh reset observation.

    ``finished`` lists ``(env, length, success)`` of every episode that ended."""

    def __init__(self, n_envs: int = N_ENVS, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.n_envs = n_envs
        self.stacks = [np.empty(0, np.uint8)] * n_envs
        self.steps = [0] * n_envs
        self.lengths = [0] * n_envs
        self.succeeds = [False] * n_envs
        self.finished: list[tuple[int, int, bool]] = []
        for env in range(n_envs):
            self._new_episode(env)

    def _frame(self) -> np.ndarray:
        return self.rng.integers(0, 256, (3, H, W), dtype=np.uint8)

    def _new_episode(self, env: int) -> None:
        self.stacks[env] = np.concatenate([self._frame()] * K)
        self.steps[env] = 0
        self.lengths[env] = int(self.rng.choice(LENGTHS))
        self.succeeds[env] = bool(self.rng.random() < 0.5)

    def next(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """``(obs, next_obs, actions, rewards, dones, infos)`` of one vector step."""
        n = self.n_envs
        obs = np.stack(self.stacks)
        next_obs = np.stack([np.concatenate([s[3:], self._frame()]) for s in self.stacks])
        actions = self.rng.uniform(-1, 1, (n, 4)).astype(np.float32)  # unique: they identify a transition
        rewards = self.rng.normal(size=n).astype(np.float32)
        dones = np.zeros(n, np.float32)
        infos = []
        for env in range(n):
            self.steps[env] += 1
            done = self.steps[env] == self.lengths[env]
            success = done and self.succeeds[env]
            info = {"vlm_embedding": self.rng.normal(size=D).astype(np.float32), "is_success": success,
                    "task_reward": float(success) - 1.0}
            if done and not success and self.rng.random() < 0.5:
                info["TimeLimit.truncated"] = True
            infos.append(info)
            dones[env] = float(done)
            if done:
                self.finished.append((env, self.lengths[env], success))
                self._new_episode(env)
            else:
                self.stacks[env] = next_obs[env]
        return obs, next_obs, actions, rewards, dones, infos


def _pixels(size: int = SIZE, n_envs: int = N_ENVS, **kwargs) -> PixelReplayBuffer:
    return PixelReplayBuffer(size, OBS, ACT, device="cpu", n_envs=n_envs, **kwargs)


def _plain(size: int = SIZE, n_envs: int = N_ENVS) -> ReplayBuffer:
    return ReplayBuffer(size, OBS, ACT, device="cpu", n_envs=n_envs)


def _vlm(**kwargs) -> VLMPixelReplayBuffer:
    return VLMPixelReplayBuffer(SIZE, OBS, ACT, device="cpu", n_envs=N_ENVS, embedding_dtype="float32", lag=1,
                                **kwargs)


def _valid_rows(buffer: PixelReplayBuffer) -> np.ndarray:
    """Rows whose stacks are complete: all written rows before the wrap, all but the K oldest after it."""
    if not buffer.full:
        return np.arange(buffer.pos)
    return (buffer.pos + K + np.arange(buffer.buffer_size - K)) % buffer.buffer_size


def _all_valid(buffer: PixelReplayBuffer) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, envs)`` of every valid transition."""
    rows = _valid_rows(buffer)
    return np.repeat(rows, buffer.n_envs), np.tile(np.arange(buffer.n_envs), len(rows))


def _assert_same_stacks(pixels: PixelReplayBuffer, plain: ReplayBuffer) -> None:
    rows, envs = _all_valid(pixels)
    obs, next_obs = pixels.stacks(rows, envs)
    assert obs.dtype == next_obs.dtype == np.uint8 and obs.shape == (len(rows), 3 * K, H, W)
    np.testing.assert_array_equal(obs, plain.observations[rows, envs])
    np.testing.assert_array_equal(next_obs, plain.next_observations[rows, envs])


def _assert_same_samples(a: Any, b: Any) -> None:
    for name in ("observations", "actions", "next_observations", "dones", "rewards"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert torch.equal(x, y), name


def _first_frame_rows(buffer: PixelReplayBuffer) -> set[tuple[int, int]]:
    """(row, env) of every stored episode start (step 0)."""
    written = buffer.buffer_size if buffer.full else buffer.pos
    return {(int(r), int(e)) for r, e in zip(*np.nonzero(buffer.episode_steps[:written] == 0))}


# ------------------------------------------------------------------------------------------ reconstruction
def test_stacks_equal_sb3_replay_buffer_before_and_after_wrap() -> None:
    stream = FrameStackStream(seed=0)
    pixels, plain = _pixels(), _plain()
    assert pixels.buffer_size == plain.buffer_size == ROWS
    wraps, ends = 0, {"truncated": 0, "terminated": 0}
    for step in range(170):  # 8.5 times around the 20 rows
        transition = stream.next()
        for done, info in zip(transition[4], transition[5]):
            if done:
                ends["truncated" if info.get("TimeLimit.truncated") else "terminated"] += 1
        pixels.add(*transition)
        plain.add(*transition)
        assert (pixels.pos, pixels.full) == (plain.pos, plain.full)
        wraps += pixels.pos == 0
        _assert_same_stacks(pixels, plain)
        assert set(pixels.first_frames) == _first_frame_rows(pixels)  # one first frame per stored episode start
        rows, envs = _all_valid(pixels)
        seed = 1000 + step
        np.random.seed(seed)
        ours = pixels._get_samples(rows)  # env indices drawn as SB3 draws them
        np.random.seed(seed)
        _assert_same_samples(ours, plain._get_samples(rows))
        if not pixels.full:  # before the wrap every row is valid: sample() draws what SB3's draws
            np.random.seed(seed)
            ours = pixels.sample(16)
            np.random.seed(seed)
            _assert_same_samples(ours, plain.sample(16))
    assert wraps == 8 and pixels.full
    lengths = [length for _, length, _ in stream.finished]
    assert min(lengths) < K and max(lengths) > ROWS  # stacks padded with first frames, and episodes > buffer
    np.testing.assert_array_equal(pixels.actions, plain.actions)
    np.testing.assert_array_equal(pixels.rewards, plain.rewards)
    np.testing.assert_array_equal(pixels.dones, plain.dones)
    np.testing.assert_array_equal(pixels.timeouts, plain.timeouts)
    assert min(ends.values()) >= 5  # both kinds of episode end went through the buffers


def test_stacks_of_a_hand_built_episode() -> None:
    """One env, frames filled with their index: episode A (frames 1..4 after reset frame 0), then B (reset 10,
    one step: frame 11), then C (reset 20, frames 21, 22)."""
    buffer = _pixels(size=10, n_envs=1)
    f = lambda v: np.full((3, H, W), v, np.uint8)  # noqa: E731
    stack = lambda *vs: np.concatenate([f(v) for v in vs])[None]  # noqa: E731
    episodes = [(0, [1, 2, 3, 4]), (10, [11]), (20, [21, 22])]
    expected = []
    for reset, frames in episodes:
        history = [reset] * K
        for t, new in enumerate(frames):
            obs, history = history, history[1:] + [new]
            done = t == len(frames) - 1
            buffer.add(stack(*obs), stack(*history), np.zeros((1, 4)), np.zeros(1), np.array([float(done)]), [{}])
            expected.append((obs, history))
    assert buffer.episode_steps[:7, 0].tolist() == [0, 1, 2, 3, 0, 0, 1]
    assert sorted(buffer.first_frames) == [(0, 0), (4, 0), (5, 0)]
    assert [int(buffer.first_frames[k][0, 0, 0]) for k in sorted(buffer.first_frames)] == [0, 10, 20]
    assert buffer.frames[:7, 0, 0, 0, 0].tolist() == [1, 2, 3, 4, 11, 21, 22]  # one frame per transition
    obs, next_obs = buffer.stacks(np.arange(7), np.zeros(7, np.int64))
    for i, (o, n) in enumerate(expected):
        assert obs[i, ::3, 0, 0].tolist() == o and next_obs[i, ::3, 0, 0].tolist() == n, i
    assert obs[2, ::3, 0, 0].tolist() == [0, 1, 2] and next_obs[4, ::3, 0, 0].tolist() == [10, 10, 11]


def test_row_indices_skip_the_oldest_rows_once_full() -> None:
    stream = FrameStackStream(seed=1)
    buffer = _pixels()
    for _ in range(7):
        buffer.add(*stream.next())
    np.random.seed(0)
    assert set(buffer.row_indices(2000).tolist()) == set(range(7))  # before the wrap: every written row
    checked = 0
    for step in range(60):
        buffer.add(*stream.next())
        if buffer.full and step % 7 == 0:  # at several positions of the write head
            drawn = buffer.row_indices(3000)
            oldest = {(buffer.pos + i) % ROWS for i in range(K)}
            assert set(drawn.tolist()) == set(range(ROWS)) - oldest  # all valid rows, never the K oldest
            rows = buffer.sample(3000).actions  # sample() uses the same rule
            assert len(rows) == 3000
            checked += 1
    assert checked >= 7


def test_buffer_not_longer_than_the_stack_refuses_to_sample_once_full() -> None:
    stream = FrameStackStream(n_envs=1, seed=2)
    buffer = _pixels(size=K, n_envs=1)
    for _ in range(K):
        buffer.add(*stream.next())
    assert buffer.full
    with pytest.raises(ValueError, match="buffer_size 3 must exceed frame_stack 3"):
        buffer.sample(4)


def test_rows_marked_filled_but_never_written_are_named() -> None:
    buffer = _pixels()
    buffer.full = True  # claims every row, none written
    with pytest.raises(ValueError, match=r"^PixelReplayBuffer: row \d+ of env [01] was never written \(no episode "
                                         r"start frame at row \d+\), yet the buffer claims it \(full=True, pos=0\)"):
        buffer.sample(4)
    stream, written = FrameStackStream(seed=3), _pixels()
    for _ in range(5):  # rows 0-4 written; the rest still claimed by full=True
        transition = stream.next()
        buffer.add(*transition)
        written.add(*transition)
    np.random.seed(0)
    with pytest.raises(ValueError, match=r"was never written .* \(full=True, pos=5\)"):
        buffer.sample(500)
    assert written.sample(500).observations.shape == (500, 3 * K, H, W)  # the rows add() wrote sample fine


# ----------------------------------------------------------------------------------------------- memory
def test_memory_per_transition() -> None:
    space = spaces.Box(0, 255, (9, 84, 84), np.uint8)
    for n_envs in (1, 2):
        pixels = PixelReplayBuffer(8 * n_envs, space, ACT, device="cpu", n_envs=n_envs)
        assert pixels.frames.shape == (8, n_envs, 3, 84, 84) and pixels.frames.dtype == np.uint8
        assert pixels.bytes_per_transition == 3 * 84 * 84 + 4 * 4 + 4 * 4 == 21200
    plain = ReplayBuffer(16, space, ACT, device="cpu", n_envs=2)
    sb3_frames = plain.observations.nbytes + plain.next_observations.nbytes
    assert sb3_frames == 6 * pixels.frames.nbytes  # six copies of each frame in SB3's buffer, one here
    sb3_total = sb3_frames + sum(a.nbytes for a in (plain.actions, plain.rewards, plain.dones, plain.timeouts))
    assert sb3_total / (plain.buffer_size * plain.n_envs) > 5.9 * pixels.bytes_per_transition
    assert PixelReplayBuffer(8, OBS, ACT, device="cpu").bytes_per_transition == 3 * H * W + 32


# ------------------------------------------------------------------------------------- VLM pixel buffer
def _feed_vlm(buffer: VLMPixelReplayBuffer, plain: ReplayBuffer, stream: FrameStackStream, steps: int,
              stored: dict[str, np.ndarray]) -> None:
    for _ in range(steps):
        transition = stream.next()
        stored["emb"][buffer.pos] = [i["vlm_embedding"] for i in transition[5]]
        stored["task"][buffer.pos] = [i["task_reward"] for i in transition[5]]
        buffer.add(*transition)
        plain.add(*transition)


def test_vlm_pixel_buffer_relabels_labels_and_views(reward_model, relabel_reward) -> None:
    model = reward_model()
    buffer, plain = _vlm(vlm_reward=relabel_reward(model, rho=0.5)), _plain()
    stream = FrameStackStream(seed=3)
    stored = {"emb": np.zeros((ROWS, N_ENVS, D), np.float32), "task": np.zeros((ROWS, N_ENVS), np.float32)}
    _feed_vlm(buffer, plain, stream, 150, stored)
    assert buffer.full and buffer.embedding_dim == D
    np.testing.assert_array_equal(buffer.embeddings, stored["emb"])
    np.testing.assert_array_equal(buffer.task_rewards, stored["task"])
    _assert_same_stacks(buffer, plain)
    valid = {(int(r), int(e)) for r, e in zip(*_all_valid(buffer))}
    where = {buffer.actions[r, e].tobytes(): (r, e) for r in range(ROWS) for e in range(N_ENVS)}

    # relabelling at sample time: task reward + rho * r_VLM with the heads as they are now
    np.random.seed(7)
    samples = buffer.sample(64)
    inds, envs, _ = buffer.last_batch
    assert {(int(r), int(e)) for r, e in zip(inds, envs)} <= valid
    with torch.no_grad():
        r_vlm = model.reward(torch.as_tensor(buffer.embeddings[inds, envs])).numpy()
    np.testing.assert_allclose(samples.rewards.squeeze(1).numpy(), buffer.task_rewards[inds, envs] + 0.5 * r_vlm,
                               rtol=1e-6, atol=1e-6)
    assert torch.equal(samples.observations, torch.as_tensor(plain.observations[inds, envs]))
    assert torch.equal(samples.next_observations, torch.as_tensor(plain.next_observations[inds, envs]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3)
    np.random.seed(7)
    assert not torch.allclose(buffer.sample(64).rewards, samples.rewards)  # relabelled with the new heads

    # episode labelling: successful episodes succeed on their last step, so all their frames are positive
    successes = [length for _, length, ok in stream.finished if ok]
    failures = [length for _, length, ok in stream.finished if not ok]
    assert successes and failures
    assert buffer.positive_count == buffer.alignment.num_positive == sum(successes)
    assert buffer.alignment.num_negative == sum(failures)
    assert (buffer.alignment.successful_episodes, buffer.alignment.failed_episodes) == (len(successes),
                                                                                        len(failures))

    # the task-reward view draws its own batches, of valid rows only, with the stored task rewards
    view = buffer.task_reward_view(share_batch=False)
    buffer.sample(32)
    for seed in range(3):
        np.random.seed(seed)
        task = view.sample(500)
        drawn = [where[a.tobytes()] for a in task.actions.numpy()]
        assert set(drawn) <= valid and len(set(drawn)) > len(valid) // 2
        rows, envs = np.array(drawn).T
        np.testing.assert_array_equal(task.rewards.squeeze(1).numpy(), buffer.task_rewards[rows, envs])
        assert torch.equal(task.observations, torch.as_tensor(plain.observations[rows, envs]))
        assert torch.equal(task.next_observations, torch.as_tensor(plain.next_observations[rows, envs]))
    shared = buffer.task_reward_view(share_batch=True)
    main = buffer.sample(16)
    task = shared.sample(16)  # the main view's batch, task reward only
    assert torch.equal(main.observations, task.observations) and torch.equal(main.actions, task.actions)
    inds, envs, _ = buffer.last_batch
    np.testing.assert_array_equal(task.rewards.squeeze(1).numpy(), buffer.task_rewards[inds, envs])


def test_vlm_pixel_buffer_episode_labelling_with_interleaved_ends() -> None:
    """As tests/test_vlm_buffer.py's labelling test, over pixel storage."""
    buffer = _vlm()
    e = lambda v: np.full(D, float(v), np.float32)  # noqa: E731
    zeros = np.zeros((N_ENVS, 3 * K, H, W), np.uint8)

    def add(embs: list[np.ndarray], successes=(False, False), dones=(False, False)) -> None:
        infos = [{"vlm_embedding": x, "is_success": s, "task_reward": float(s) - 1.0}
                 for x, s in zip(embs, successes)]
        buffer.add(zeros, zeros, np.zeros((N_ENVS, 4)), np.zeros(N_ENVS), np.array(dones, np.float32), infos)

    # env 0: 3-step episode, success at its steps 1 and 2 -> all 3 positive; env 1: 5-step failed episode
    add([e(0), e(100)])
    add([e(1), e(101)], successes=(True, False))
    add([e(2), e(102)], successes=(True, False), dones=(True, False))
    assert buffer.alignment.num_positive == 3 and buffer.alignment.num_negative == 0
    add([e(10), e(103)])  # env 0's next episode starts
    add([e(11), e(104)], dones=(False, True))
    assert buffer.positive_count == 3 and buffer.alignment.num_negative == 5
    np.testing.assert_array_equal(buffer.alignment.positives.embeddings[:3, 0], [0, 1, 2])
    np.testing.assert_array_equal(buffer.alignment.negatives.embeddings[:5, 0], [100, 101, 102, 103, 104])
    assert [x[0][0] for x in buffer._episodes[0]] == [10, 11]  # env 0's unfinished episode
    assert buffer.episode_steps[:5].tolist() == [[0, 0], [1, 1], [2, 2], [0, 3], [1, 4]]
    assert sorted(buffer.first_frames) == [(0, 0), (0, 1), (3, 0)]


# ------------------------------------------------------------------------------------------- save / load
@pytest.mark.parametrize("steps", [13, 95])  # before and after the wrap-around
def test_save_load_round_trip(tmp_path, steps: int) -> None:
    stream = FrameStackStream(seed=4)
    original, plain = _pixels(), _plain()
    for _ in range(steps):
        transition = stream.next()
        original.add(*transition)
        plain.add(*transition)
    assert original.full == (steps > ROWS)
    path = save_buffer(original, tmp_path / "pixels", step=steps)
    loaded = _pixels()
    assert load_buffer(path, loaded) == steps
    assert (loaded.pos, loaded.full) == (original.pos, original.full)
    assert loaded.first_frames.keys() == original.first_frames.keys()
    for key, frame in original.first_frames.items():
        np.testing.assert_array_equal(loaded.first_frames[key], frame)
    rows, envs = _all_valid(original)
    for a, b in zip(loaded.stacks(rows, envs), original.stacks(rows, envs)):
        np.testing.assert_array_equal(a, b)
    _assert_same_stacks(loaded, plain)
    for _ in range(30):  # carrying on after the load is carrying on with the original
        transition = stream.next()
        for buffer in (original, loaded, plain):
            buffer.add(*transition)
        assert (loaded.pos, loaded.full) == (original.pos, original.full)
        assert loaded.first_frames.keys() == original.first_frames.keys()
        np.testing.assert_array_equal(loaded.episode_steps, original.episode_steps)
        _assert_same_stacks(loaded, plain)
        _assert_same_stacks(original, plain)
    np.random.seed(11)
    a = loaded.sample(64)
    np.random.seed(11)
    _assert_same_samples(a, original.sample(64))


def test_vlm_pixel_save_load_round_trip(tmp_path, reward_model, relabel_reward) -> None:
    model = reward_model()
    reward = relabel_reward(model, rho=0.5)
    stream = FrameStackStream(seed=5)
    original, plain = _vlm(vlm_reward=reward), _plain()
    stored = {"emb": np.zeros((ROWS, N_ENVS, D), np.float32), "task": np.zeros((ROWS, N_ENVS), np.float32)}
    _feed_vlm(original, plain, stream, 95, stored)
    assert original.full and original.positive_count > 0
    path = save_buffer(original, tmp_path / "vlm-pixels", step=95)
    loaded = _vlm()
    assert load_buffer(path, loaded) == 95
    assert loaded.vlm_reward is None
    loaded.attach(reward)
    assert (loaded.pos, loaded.full, loaded.embedding_dim) == (original.pos, original.full, D)
    assert loaded.first_frames.keys() == original.first_frames.keys()
    np.testing.assert_array_equal(loaded.embeddings, original.embeddings)
    np.testing.assert_array_equal(loaded.task_rewards, original.task_rewards)
    assert loaded.positive_count == original.positive_count
    assert loaded.alignment.num_negative == original.alignment.num_negative
    assert [len(x) for x in loaded._episodes] == [len(x) for x in original._episodes]
    _assert_same_stacks(loaded, plain)
    np.random.seed(12)
    a = loaded.sample(32)
    np.random.seed(12)
    _assert_same_samples(a, original.sample(32))  # relabelled rewards included
    for _ in range(40):
        transition = stream.next()
        for buffer in (original, loaded, plain):
            buffer.add(*transition)
        assert loaded.positive_count == original.positive_count
        assert loaded.alignment.failed_episodes == original.alignment.failed_episodes
        assert loaded.alignment.successful_episodes == original.alignment.successful_episodes
        np.testing.assert_array_equal(loaded.episode_steps, original.episode_steps)
        _assert_same_stacks(loaded, plain)
    np.random.seed(13)
    a = loaded.sample(32)
    np.random.seed(13)
    _assert_same_samples(a, original.sample(32))
    np.random.seed(14)
    a = loaded.task_reward_view(share_batch=False).sample(32)
    np.random.seed(14)
    _assert_same_samples(a, original.task_reward_view(share_batch=False).sample(32))


# -------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("space", [
    spaces.Box(0, 1, (9, 8, 8), np.float32),  # not uint8
    spaces.Box(0, 255, (8, 8), np.uint8),  # not 3-D
    spaces.Box(0, 255, (9, 8), np.uint8),
    spaces.Box(0, 255, (8, 8, 8), np.uint8),  # channels not a multiple of 3
    spaces.Box(0, 255, (8, 8, 9), np.uint8),  # channel-last
    spaces.Discrete(4),
])
@pytest.mark.parametrize("cls", [PixelReplayBuffer, VLMPixelReplayBuffer])
def test_bad_observation_spaces(space: spaces.Space, cls: type) -> None:
    import re

    with pytest.raises(ValueError, match=rf"^{cls.__name__} needs uint8 observations .*got {re.escape(str(space))}$"):
        cls(10, space, ACT, device="cpu")


def test_bad_settings_and_adds() -> None:
    with pytest.raises(ValueError, match="optimize_memory_usage must be False"):
        PixelReplayBuffer(10, OBS, ACT, device="cpu", optimize_memory_usage=True)
    buffer = _pixels()
    ok = np.zeros((N_ENVS, 3 * K, H, W), np.uint8)
    bad_shapes = [np.zeros((N_ENVS, 3 * K, H, H + 1), np.uint8), np.zeros((1, 3 * K, H, W), np.uint8),
                  np.zeros((N_ENVS, 3, H, W), np.uint8)]
    for bad in bad_shapes:
        for obs, next_obs in ((bad, ok), (ok, bad)):
            with pytest.raises(ValueError, match=r"obs/next_obs must have shape \(2, 9, 8, 8\)"):
                buffer.add(obs, next_obs, np.zeros((N_ENVS, 4)), np.zeros(N_ENVS), np.zeros(N_ENVS), [{}, {}])
    assert buffer.pos == 0 and not buffer.first_frames  # nothing was stored


def test_refused_add_leaves_the_vlm_state_unchanged() -> None:
    buffer = _vlm()
    bad = np.zeros((N_ENVS, 3 * K, H, W + 1), np.uint8)
    info = {"vlm_embedding": np.ones(D, np.float32), "is_success": True, "task_reward": 0.0}
    with pytest.raises(ValueError, match="obs must have shape"):
        buffer.add(bad, bad, np.zeros((N_ENVS, 4)), np.zeros(N_ENVS), np.ones(N_ENVS), [info, dict(info)])
    assert buffer.pos == 0
    assert buffer.positive_count == 0 and buffer.embedding_dim is None  # nothing stored, labelled or allocated


def test_save_load_when_rows_equal_n_envs(tmp_path) -> None:
    original, loaded = _pixels(size=4), _pixels(size=4)  # 2 rows of 2 envs
    zeros = np.zeros((N_ENVS, 3 * K, H, W), np.uint8)
    original.add(zeros, zeros, np.zeros((N_ENVS, 4)), np.zeros(N_ENVS), np.zeros(N_ENVS), [{}, {}])
    assert not original.full and original._next_step.tolist() == [1, 1]
    load_buffer(save_buffer(original, tmp_path / "tiny", step=1), loaded)
    np.testing.assert_array_equal(loaded._next_step, original._next_step)


def test_an_env_reset_without_done_starts_a_new_episode() -> None:
    """A new learn() or a loaded model resets the env with no done stored: the observation that is not the previous
    transition's next observation starts an episode (its stack is its first frame repeated)."""
    rng = np.random.default_rng(5)
    buffer = _pixels(size=50, n_envs=1)
    frames = rng.integers(0, 256, (10, 3, H, W), dtype=np.uint8)
    stack = np.concatenate([frames[0]] * K)[None]
    for t in range(1, 5):  # an episode cut after 4 steps (no done)
        nxt = np.concatenate([stack[0, 3:], frames[t]])[None]
        buffer.add(stack, nxt, np.zeros((1, 4)), np.zeros(1), np.zeros(1), [{}])
        stack = nxt
    fresh = np.concatenate([frames[7]] * K)[None]  # the env was reset: a new first frame
    nxt = np.concatenate([fresh[0, 3:], frames[8]])[None]
    buffer.add(fresh, nxt, np.zeros((1, 4)), np.zeros(1), np.zeros(1), [{}])
    obs, next_obs = buffer.stacks(np.array([4]), np.array([0]))
    assert buffer.episode_steps[4, 0] == 0 and (4, 0) in buffer.first_frames
    np.testing.assert_array_equal(obs[0], fresh[0])
    np.testing.assert_array_equal(next_obs[0], nxt[0])
    obs, _ = buffer.stacks(np.array([3]), np.array([0]))  # the cut episode's rows are as they were
    assert buffer.episode_steps[3, 0] == 3
    buffer.reset()
    assert buffer.pos == 0 and not buffer.first_frames and buffer._next_step.tolist() == [0]
