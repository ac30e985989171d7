"""RelayPolicy: FuRL's relay RL — two SB3 SAC agents taking turns within episodes, one shared replay buffer.

``RelayPolicy`` *is* the VLM agent (an SB3 ``SAC`` subclass: ``predict``, ``learn``, ``EvalCallback``,
``CheckpointCallback`` and the logger work unchanged) and holds a second, plain ``SAC`` agent:

- the VLM agent trains on the relabelled reward ``task + ρ·r_VLM`` sampled from the shared
  :class:`~furl_wrappers.buffers.VLMReplayBuffer`; the SAC agent trains on the task reward of the *same* batch
  (the buffer's :class:`~furl_wrappers.buffers.TaskRewardView`), as in the reference code;
- relay schedule, per env: at each episode start a relay length T is drawn from ``relay_lengths``
  ({50, 100, 150, 200}); the acting agent switches every T steps; the starting agent alternates from one episode
  to the next (env i's first episode starts with the VLM agent for even i, the SAC agent for odd i);
- the SAC agent's actions get Gaussian noise N(0, ``relay_noise``·max_action), clipped; the VLM agent's none;
- once the buffer has labelled ``relay_threshold`` (2,500) positive frames, relay ends for good: only the VLM agent
  acts and the SAC agent stops training;
- with ``align=True`` a :class:`~furl_wrappers.callbacks.RewardAlignmentCallback` runs inside ``learn``.

Configurations, not forks: ``relay=False`` is SAC on the VLM reward (no second agent); ``align=False`` with a
``"frozen"`` or ``"raw"`` reward model is the paper's Relay baseline.

Hooks (no copy of ``collect_rollouts``): ``_sample_action`` (who acts), ``_store_transition`` (schedule counters,
threshold), ``train`` (both agents, one batch). Logs under ``furl/``.

Save/load: :meth:`save` writes one zip — SB3's own format for the VLM agent, plus the SAC agent's SB3 zip
(``relay_sac.zip``), the project's state as JSON (``furl_state.json``) and tensors (``furl_tensors.pt``, loaded
with ``torch.load(weights_only=True)``: reward heads, their optimiser, RNG states). Written to a temp file and
renamed. :meth:`load` checks task, encoder and spaces first. Loading an SB3 zip from an untrusted source runs its
code (SB3 pickles parts of the model): only load checkpoints you trust.

Example:
    >>> import furl_wrappers
    >>> from furl_wrappers.relay import RelayPolicy
    >>> venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    >>> model = RelayPolicy("MlpPolicy", venv, learning_starts=20, buffer_size=1000, batch_size=16,
    ...                     alignment_kwargs={"batch_size": 16, "goal_image": None})
    >>> _ = model.learn(40)
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import tempfile
import zipfile
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.type_aliases import MaybeCallback

from furl_wrappers.buffers import VLMReplayBuffer
from furl_wrappers.callbacks.alignment import RewardAlignmentCallback, find_vlm_reward

__all__ = ["RelayPolicy", "CheckpointMismatchError"]

_STATE_FORMAT = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint was made for another task, encoder or observation/action space."""


class _PrefixLogger(Logger):
    """Forwards ``record`` to another logger under a prefix (the relay SAC agent logs as ``relay_sac/...``)."""

    def __init__(self, parent: Logger, prefix: str) -> None:
        super().__init__(folder=None, output_formats=[])
        self.parent, self.prefix = parent, prefix

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        self.parent.record(self.prefix + key.split("/", 1)[-1], value, exclude)

    def record_mean(self, key: str, value: Any, exclude: Any = None) -> None:
        self.parent.record_mean(self.prefix + key.split("/", 1)[-1], value, exclude)

    def dump(self, step: int = 0) -> None:
        pass


class RelayPolicy(SAC):
    """FuRL's relay RL over SB3 SAC. Arguments not listed are SAC's, with the paper's defaults.

    Args:
        policy, env: as for ``SAC`` (env: a vector env with the VLM reward, e.g. ``make_vlm_vec_env``).
        relay: use the relay SAC agent (``False``: plain SAC on the VLM reward).
        relay_threshold: positive frames after which relay ends for good (2,500).
        relay_lengths: relay lengths drawn at each episode start ({50, 100, 150, 200}; any sequence, e.g. a range).
        relay_noise: std of the Gaussian noise on the SAC agent's actions, as a fraction of max_action (0.2).
        align: run :class:`~furl_wrappers.callbacks.RewardAlignmentCallback` inside ``learn``.
        alignment_kwargs: its arguments (margin, lag, goal_margin, lr, batch_size, goal_image, ...).
        learning_rate: 1e-4; buffer_size: 1e6; learning_starts: 10,000 (uniform random steps); batch_size: 256;
            tau: 0.01; gamma: 0.99; target_entropy: ``"paper"`` = −|A|/2.
    """

    def __init__(
        self,
        policy: Any,
        env: Any,
        *,
        relay: bool = True,
        relay_threshold: int = 2500,
        relay_lengths: Sequence[int] = (50, 100, 150, 200),
        relay_noise: float = 0.2,
        align: bool = True,
        alignment_kwargs: Optional[dict[str, Any]] = None,
        learning_rate: float = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 10_000,
        batch_size: int = 256,
        tau: float = 0.01,
        gamma: float = 0.99,
        target_entropy: Union[str, float] = "paper",
        replay_buffer_class: Optional[type] = None,
        replay_buffer_kwargs: Optional[dict[str, Any]] = None,
        seed: Optional[int] = None,
        device: Union[torch.device, str] = "auto",
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        if not isinstance(relay_threshold, (int, np.integer)) or relay_threshold < 0:
            raise ValueError(f"relay_threshold must be an integer >= 0 (2500 in the paper), got {relay_threshold!r}")
        lengths = list(relay_lengths)
        if not lengths or any(not isinstance(n, (int, np.integer)) or n < 1 for n in lengths):
            raise ValueError(f"relay_lengths must be positive integers such as (50, 100, 150, 200), got {relay_lengths!r}")
        if not np.isfinite(relay_noise) or relay_noise < 0:
            raise ValueError(f"relay_noise must be a number >= 0 (0.2 in the paper), got {relay_noise!r}")
        replay_buffer_class = replay_buffer_class or VLMReplayBuffer
        if not issubclass(replay_buffer_class, VLMReplayBuffer):
            raise ValueError(f"RelayPolicy needs a VLMReplayBuffer (or subclass), got {replay_buffer_class.__name__}")
        self.relay = bool(relay)
        self.relay_threshold = int(relay_threshold)
        self.relay_lengths = [int(n) for n in lengths]
        self.relay_noise = float(relay_noise)
        self.align = bool(align)
        self.alignment_kwargs = dict(alignment_kwargs or {})
        self.sac_agent: Optional[SAC] = None
        self.alignment_callback: Optional[RewardAlignmentCallback] = None
        self._pending_state: Optional[dict] = None
        super().__init__(
            policy, env, learning_rate=learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
            batch_size=batch_size, tau=tau, gamma=gamma, target_entropy=target_entropy,
            replay_buffer_class=replay_buffer_class, replay_buffer_kwargs=replay_buffer_kwargs, seed=seed,
            device=device, _init_setup_model=False, **kwargs,
        )
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ set-up
    def _setup_model(self) -> None:
        if self.target_entropy == "paper":
            self.target_entropy = -float(np.prod(self.action_space.shape)) / 2.0
        super()._setup_model()
        self.relay_active = self.relay
        self._relay_rng = np.random.default_rng(self.seed)
        self._ep_step = np.zeros(self.n_envs, dtype=np.int64)
        self._start_with_sac = np.arange(self.n_envs) % 2 == 1
        self._relay_length = self._relay_rng.choice(self.relay_lengths, size=self.n_envs)
        self.vlm_steps = 0
        self.sac_steps = 0
        self._build_sac_agent()
        if self.align and self.alignment_callback is None:
            self.alignment_callback = RewardAlignmentCallback(**self.alignment_kwargs)

    def _build_sac_agent(self) -> None:
        if not self.relay:
            self.sac_agent = None
            return
        agent = SAC(
            self.policy_class, self.env, learning_rate=self.learning_rate, buffer_size=1,
            learning_starts=self.learning_starts, batch_size=self.batch_size, tau=self.tau, gamma=self.gamma,
            train_freq=self.train_freq, gradient_steps=self.gradient_steps, ent_coef=self.ent_coef,
            target_update_interval=self.target_update_interval, target_entropy=self.target_entropy,
            policy_kwargs=self.policy_kwargs, device=self.device, _init_setup_model=False,
        )
        if self.env is None:
            agent.observation_space, agent.action_space, agent.n_envs = self.observation_space, self.action_space, self.n_envs
        agent._setup_model()
        agent.replay_buffer = self.replay_buffer.task_reward_view(share_batch=True)
        self.sac_agent = agent

    def _excluded_save_params(self) -> list[str]:
        return super()._excluded_save_params() + [
            "sac_agent", "alignment_callback", "_relay_rng", "_pending_state", "_ep_step", "_start_with_sac",
            "_relay_length", "relay_active", "vlm_steps", "sac_steps",
        ]

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, BaseCallback]:
        if self.alignment_callback is not None:
            callbacks = [self.alignment_callback]
            if callback is not None:
                callbacks += list(callback) if isinstance(callback, list) else [callback]
            callback = CallbackList(callbacks)
        total, callback = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name,
                                               progress_bar)
        self._attach_reward_model()
        if self.sac_agent is not None:
            self.sac_agent.set_logger(_PrefixLogger(self.logger, "relay_sac/"))
            self.sac_agent.num_timesteps = self.num_timesteps
        return total, callback

    def _attach_reward_model(self) -> None:
        """Attach the env's reward model to the buffer if none is (the alignment callback also does it)."""
        if self.replay_buffer is not None and self.replay_buffer.reward_model is None and self.env is not None:
            self.replay_buffer.attach(find_vlm_reward(self.env)[0])

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        """SB3's ``load_replay_buffer``, then re-attach the reward model and the SAC agent's task-reward view."""
        super().load_replay_buffer(path, truncate_last_traj)
        if not isinstance(self.replay_buffer, VLMReplayBuffer):
            raise TypeError(f"{path!r} does not hold a VLMReplayBuffer")
        self._attach_reward_model()
        if self.sac_agent is not None:
            self.sac_agent.replay_buffer = self.replay_buffer.task_reward_view(share_batch=True)

    # ------------------------------------------------------------- relay hooks
    def sac_acting(self) -> np.ndarray:
        """Bool ``(n_envs,)``: which envs the SAC agent acts in at the current step (all False once relay ends)."""
        if not self.relay_active or self.sac_agent is None:
            return np.zeros(self.n_envs, dtype=bool)
        turn = self._ep_step // self._relay_length
        return (turn + self._start_with_sac.astype(np.int64)) % 2 == 1

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
        mask = self.sac_acting()
        warmup = self.num_timesteps < learning_starts and not (self.use_sde and self.use_sde_at_warmup)
        action, buffer_action = super()._sample_action(learning_starts, action_noise, n_envs)
        if warmup or not mask.any():
            self.vlm_steps += 0 if warmup else int(n_envs)
            return action, buffer_action
        unscaled, _ = self.sac_agent.predict(self._last_obs[mask], deterministic=False)
        scaled = self.policy.scale_action(unscaled)
        scaled = np.clip(scaled + self._relay_rng.normal(0.0, self.relay_noise, scaled.shape), -1.0, 1.0)
        buffer_action = buffer_action.copy()
        buffer_action[mask] = scaled
        action = self.policy.unscale_action(buffer_action)
        self.sac_steps += int(mask.sum())
        self.vlm_steps += int((~mask).sum())
        return action, buffer_action

    def _store_transition(self, replay_buffer: Any, buffer_action: np.ndarray, new_obs: Any, reward: np.ndarray,
                          dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._ep_step += 1
        for i in np.flatnonzero(dones):
            self._ep_step[i] = 0
            self._start_with_sac[i] = not self._start_with_sac[i]
            self._relay_length[i] = self._relay_rng.choice(self.relay_lengths)
        positives = self.replay_buffer.positive_count
        if self.relay_active and positives >= self.relay_threshold:
            self.relay_active = False
        acting = self.sac_acting()
        self.logger.record("furl/relay_on", int(self.relay_active))
        self.logger.record("furl/acting_agent_env0", "sac" if acting[0] else "vlm", exclude=("csv", "tensorboard"))
        self.logger.record("furl/sac_acting_fraction", float(acting.mean()))
        self.logger.record("furl/relay_length", float(self._relay_length.mean()))
        self.logger.record("furl/positive_count", positives)
        self.logger.record("furl/sac_steps", self.sac_steps)
        self.logger.record("furl/vlm_steps", self.vlm_steps)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """Each gradient step: the VLM agent on a relabelled batch, then (while relaying) the SAC agent on the
        same batch's task rewards."""
        for _ in range(gradient_steps):
            super().train(1, batch_size)
            if self.relay_active and self.sac_agent is not None:
                self.sac_agent._current_progress_remaining = self._current_progress_remaining
                self.sac_agent.train(1, batch_size)

    # -------------------------------------------------------------- save/load
    def _identity(self) -> dict[str, Any]:
        """What a checkpoint must match: task, encoder, spaces, reward model shape."""
        ident: dict[str, Any] = {
            "observation_space": repr(self.observation_space),
            "action_space": repr(self.action_space),
        }
        if self.env is not None:
            try:
                model, encoder = find_vlm_reward(self.env)
                ident["encoder"] = getattr(encoder, "name", type(encoder).__name__)
                ident["reward_model"] = {"dim": model.dim, "mode": model.mode}
            except ValueError:
                pass
            try:
                ident["task"] = str(self.env.get_attr("task", indices=[0])[0])
            except AttributeError:
                pass
        return ident

    def _furl_state(self) -> tuple[dict[str, Any], dict[str, Any]]:
        np_state = np.random.get_state()
        state = {
            "format": _STATE_FORMAT,
            "identity": self._identity(),
            "relay": {
                "active": bool(self.relay_active), "ep_step": self._ep_step.tolist(),
                "start_with_sac": self._start_with_sac.tolist(), "relay_length": self._relay_length.tolist(),
                "vlm_steps": self.vlm_steps, "sac_steps": self.sac_steps,
                "rng": self._relay_rng.bit_generator.state,
            },
            "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "positive_count": int(self.replay_buffer.positive_count) if self.replay_buffer is not None else 0,
        }
        tensors: dict[str, Any] = {"torch_rng": torch.get_rng_state()}
        cb = self.alignment_callback
        if cb is not None:
            state["alignment"] = {"stage": cb.stage, "alignment_steps": cb.alignment_steps}
            if cb.reward_model is not None:
                tensors["reward_model"] = cb.reward_model.state_dict()
            if cb.optimizer is not None:
                tensors["reward_optimizer"] = cb.optimizer.state_dict()
        elif self.env is not None:
            try:
                tensors["reward_model"] = find_vlm_reward(self.env)[0].state_dict()
            except ValueError:
                pass
        return state, tensors

    def save(self, path: Union[str, pathlib.Path, io.BufferedIOBase], exclude: Any = None, include: Any = None) -> None:
        """Save the VLM agent (SB3 format), the SAC agent, reward heads + optimiser and relay state in one zip.

        The file is written to a temp file beside ``path`` and renamed, so an interrupted save leaves the previous
        checkpoint intact. ``path`` gets a ``.zip`` suffix when it has none (as in SB3).
        """
        if isinstance(path, io.BufferedIOBase):
            raise TypeError("RelayPolicy.save needs a file path (it writes atomically through a temp file)")
        path = pathlib.Path(path)
        if path.suffix != ".zip":
            path = path.with_name(path.name + ".zip")
        path.parent.mkdir(parents=True, exist_ok=True)
        state, tensors = self._furl_state()
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            super().save(tmp, exclude=exclude, include=include)
            with zipfile.ZipFile(tmp, "a") as archive:
                if self.sac_agent is not None:
                    sac_bytes = io.BytesIO()
                    self.sac_agent.save(sac_bytes)
                    archive.writestr("relay_sac.zip", sac_bytes.getvalue())
                archive.writestr("furl_state.json", json.dumps(state))
                blob = io.BytesIO()
                torch.save(tensors, blob)
                archive.writestr("furl_tensors.pt", blob.getvalue())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: Union[str, pathlib.Path], env: Any = None, device: Union[torch.device, str] = "auto",
             custom_objects: Optional[dict[str, Any]] = None, print_system_info: bool = False,
             force_reset: bool = True, **kwargs: Any) -> "RelayPolicy":
        """Load a :meth:`save` checkpoint; with ``env``, check it was made for the same task, encoder and spaces,
        restore the reward heads into the env's reward model, and restore RNG states so that
        ``learn(..., reset_num_timesteps=False)`` continues exactly (with ``load_replay_buffer`` for the buffer).

        Raises:
            CheckpointMismatchError: the checkpoint is for another task, encoder or observation/action space.
        """
        path = pathlib.Path(path)
        if not path.exists() and path.with_name(path.name + ".zip").exists():
            path = path.with_name(path.name + ".zip")
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "furl_state.json" not in names:
                raise ValueError(f"{str(path)!r} is not a RelayPolicy checkpoint (no furl_state.json); "
                                 "load plain SB3 models with SAC.load")
            state = json.loads(archive.read("furl_state.json"))
            tensors = torch.load(io.BytesIO(archive.read("furl_tensors.pt")), weights_only=True)
            sac_bytes = archive.read("relay_sac.zip") if "relay_sac.zip" in names else None
        if env is not None:
            cls._check_identity(state["identity"], env)
        model = super().load(path, env=env, device=device, custom_objects=custom_objects,
                             print_system_info=print_system_info, force_reset=force_reset, **kwargs)
        if sac_bytes is not None and model.sac_agent is not None:
            sac = SAC.load(io.BytesIO(sac_bytes), env=env, device=device, buffer_size=1)
            sac.replay_buffer = model.replay_buffer.task_reward_view(share_batch=True)
            model.sac_agent = sac
        model._restore_furl_state(state, tensors, env)
        return model

    @staticmethod
    def _check_identity(saved: dict[str, Any], env: Any) -> None:
        probe: dict[str, Any] = {"observation_space": repr(env.observation_space),
                                 "action_space": repr(env.action_space)}
        try:
            probe["task"] = str(env.get_attr("task", indices=[0])[0])
        except AttributeError:
            pass
        try:
            model, encoder = find_vlm_reward(env)
            probe["encoder"] = getattr(encoder, "name", type(encoder).__name__)
            probe["reward_model"] = {"dim": model.dim, "mode": model.mode}
        except ValueError:
            pass
        for key in ("task", "encoder", "reward_model", "observation_space", "action_space"):
            if key in saved and key in probe and saved[key] != probe[key]:
                raise CheckpointMismatchError(
                    f"checkpoint mismatch in {key}: the checkpoint was made with {saved[key]!r}, "
                    f"the given env has {probe[key]!r}"
                )

    def _restore_furl_state(self, state: dict[str, Any], tensors: dict[str, Any], env: Any) -> None:
        relay = state["relay"]
        self.relay_active = bool(relay["active"])
        if len(relay["ep_step"]) == self.n_envs:
            self._ep_step = np.array(relay["ep_step"], dtype=np.int64)
            self._start_with_sac = np.array(relay["start_with_sac"], dtype=bool)
            self._relay_length = np.array(relay["relay_length"], dtype=np.int64)
        self.vlm_steps, self.sac_steps = int(relay["vlm_steps"]), int(relay["sac_steps"])
        self._relay_rng.bit_generator.state = relay["rng"]
        if env is not None and "reward_model" in tensors:
            reward_model, _ = find_vlm_reward(env)
            reward_model.load_state_dict(tensors["reward_model"])
            if self.alignment_callback is not None:
                self.alignment_callback.reward_model = reward_model
        if self.alignment_callback is not None and "alignment" in state:
            self.alignment_callback.stage = int(state["alignment"]["stage"])
            self.alignment_callback.alignment_steps = int(state["alignment"]["alignment_steps"])
            self.alignment_callback.pending_optimizer_state = tensors.get("reward_optimizer")
        # SB3's load re-seeds the global generators with the original seed; put back where training was
        np_rng = state["numpy_rng"]
        np.random.set_state((np_rng[0], np.array(np_rng[1], dtype=np.uint32), *np_rng[2:]))
        torch.set_rng_state(tensors["torch_rng"])
