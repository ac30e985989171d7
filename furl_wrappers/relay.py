"""RelayPolicy: FuRL's relay RL — two agents taking turns within episodes over one shared replay buffer.

The relay is the mixin ``_Relay`` (hooks that call ``super()``: ``_sample_action`` picks who acts,
``_store_transition`` keeps the schedule, ``train`` trains both; no copy of ``collect_rollouts``); ``RelayPolicy``
is ``_Relay`` over SAC (the paper's), :mod:`furl_wrappers.backbones` over TQC, CrossQ and DrQ. ``RelayPolicy`` *is*
the VLM agent (``predict``, ``learn``, ``EvalCallback`` and the logger work unchanged) and holds the *task agent*, a
plain agent of its ``backbone`` that trains on the task reward of the *same* batches (``TaskRewardView``) while
the VLM agent trains on ``task + ρ·r_VLM`` relabelled by the shared ``VLMReplayBuffer``. Who acts is the
:class:`~furl_wrappers.relay_schedule.RelaySchedule`'s (the task agent's actions get N(0, ``relay_noise``) noise);
relay ends for good at ``relay_threshold`` (2,500) positive frames; ``align=True`` runs a
:class:`~furl_wrappers.callbacks.RewardAlignmentCallback` inside ``learn``.

Save/load: one zip (:mod:`furl_wrappers.relay_checkpoint`), written atomically, loaded without unpickling anything.

Example:
    >>> import furl_wrappers
    >>> from furl_wrappers.relay import RelayPolicy
    >>> venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    >>> model = RelayPolicy("MlpPolicy", venv, vlm_reward=venv.vlm_reward, learning_starts=20, buffer_size=1000,
    ...                     batch_size=16, alignment_kwargs={"batch_size": 16})
    >>> _ = model.learn(40)
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import Sequence
from types import SimpleNamespace
from typing import IO, TYPE_CHECKING, Any, ClassVar, Union, cast

import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import MaybeCallback

from furl_wrappers import relay_checkpoint, serialization
from furl_wrappers._relay_train import PrefixLogger, shared_batches
from furl_wrappers.callbacks.alignment import RewardAlignmentCallback
from furl_wrappers.relay_checkpoint import CheckpointMismatchError, CorruptFileError
from furl_wrappers.relay_schedule import RelaySchedule
from furl_wrappers.validation import check_int, check_number, init_keywords
from furl_wrappers.vlm_buffer import VLMReplayBuffer
from furl_wrappers.vlm_reward import VLMReward
from furl_wrappers.wrappers import vlm_reward_of

__all__ = ["RelayPolicy", "CheckpointMismatchError", "is_relay"]


def is_relay(cls_or_model: Any) -> bool:
    """Whether a class (or model) is a relay agent: RelayPolicy, or the relay over another backbone."""
    cls = cls_or_model if isinstance(cls_or_model, type) else type(cls_or_model)
    return issubclass(cls, _Relay)


# the second agent gets every setting its backbone takes but these (own buffer: it reads the task-reward view)
_NOT_SHARED = frozenset({"self", "policy", "env", "buffer_size", "replay_buffer_class", "replay_buffer_kwargs",
                         "optimize_memory_usage", "n_steps", "action_noise", "stats_window_size", "tensorboard_log",
                         "verbose", "seed", "_init_setup_model", "use_sde", "sde_sample_freq", "use_sde_at_warmup"})

#: where a checkpoint goes or comes from: a path or a binary handle (SB3's stubs spell a handle io.BufferedIOBase)
_CheckpointPath = Union[str, os.PathLike, IO[bytes], io.BufferedIOBase]

# mixed in before an SB3 off-policy algorithm, whose attributes it uses: typed against it, derived from object
if TYPE_CHECKING:
    _RelayBase = OffPolicyAlgorithm
else:
    _RelayBase = object


class _Relay(_RelayBase):
    """The relay over an SB3 off-policy algorithm: mix in before it (``class R(_Relay, SAC)``) and name the plain
    algorithm of the second agent in ``backbone``. Arguments: the relay's (see :class:`RelayPolicy`), the rest go to
    the algorithm; ``target_entropy="paper"`` is −|A|/2."""

    backbone: ClassVar[type[OffPolicyAlgorithm]]
    #: the shared buffer's class when none is given (pixel observations: the frame-once VLMPixelReplayBuffer)
    default_buffer_class: ClassVar[type] = VLMReplayBuffer
    #: constructor arguments the algorithm keeps under another attribute (sbx: ``ent_coef`` → ``ent_coef_init``)
    setting_attributes: ClassVar[dict[str, str]] = {}
    #: tensor files the relay's zip holds besides the algorithm's (its reward heads, optimiser and RNG states)
    extra_param_files: ClassVar[tuple[str, ...]] = (relay_checkpoint.TENSORS_ENTRY,)
    if TYPE_CHECKING:
        # SAC's, TQC's, CrossQ's (the off-policy base has none); "paper" until _setup_model resolves it
        target_entropy: str | float

    def __init__(
        self,
        policy: Any,
        env: Any,
        *,
        vlm_reward: VLMReward | None = None,
        relay: bool = True,
        relay_threshold: int = 2500,
        relay_lengths: Sequence[int] = (50, 100, 150, 200),
        relay_noise: float = 0.2,
        align: bool = True,
        alignment_kwargs: dict[str, Any] | None = None,
        replay_buffer_class: type | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        relay_threshold = check_int("relay_threshold", relay_threshold, 0, hint="2500 in the paper")
        lengths = list(relay_lengths)
        if not lengths:
            raise ValueError(f"relay_lengths must be positive integers such as (50, 100, 150, 200), "
                             f"got {relay_lengths!r}")
        lengths = [check_int("relay_lengths entry", n, hint="such as (50, 100, 150, 200)") for n in lengths]
        relay_noise = check_number("relay_noise", relay_noise, low=0.0, hint="0.2 in the paper")
        replay_buffer_class = replay_buffer_class or self.default_buffer_class
        if not issubclass(replay_buffer_class, VLMReplayBuffer):
            raise ValueError(f"{type(self).__name__} needs a VLMReplayBuffer (or subclass), got "
                             f"{replay_buffer_class.__name__}")
        if vlm_reward is not None and not isinstance(vlm_reward, VLMReward):
            raise TypeError(f"vlm_reward must be a furl_wrappers.VLMReward, got {type(vlm_reward).__name__}")
        self.vlm_reward = vlm_reward
        self.relay = bool(relay)
        self.relay_threshold = relay_threshold
        self.relay_lengths = lengths
        self.relay_noise = relay_noise
        self.align = bool(align)
        self.alignment_kwargs = dict(alignment_kwargs or {})
        # a mistyped alignment key fails here, naming it, not deep inside learn()
        valid = set(inspect.signature(RewardAlignmentCallback.__init__).parameters) - {"self", "vlm_reward"}
        for key in self.alignment_kwargs:
            if key not in valid:
                raise ValueError(f"alignment_kwargs: unknown key {key!r} (valid: {', '.join(sorted(valid))})")
        self.task_agent: Any | None = None
        self.alignment_callback: RewardAlignmentCallback | None = None
        # the algorithm after the mixin (SAC, TQC, CrossQ, DrQ) takes _init_setup_model; OffPolicyAlgorithm does not
        super().__init__(policy, env, replay_buffer_class=replay_buffer_class,
                         _init_setup_model=False, **kwargs)  # type: ignore[call-arg]
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ set-up
    def _setup_model(self) -> None:
        if self.target_entropy == "paper":
            assert self.action_space.shape is not None  # a Box (the algorithm checks it)
            self.target_entropy = -float(np.prod(self.action_space.shape)) / 2.0
        if self.vlm_reward is None and self.env is not None:
            try:
                self.vlm_reward = vlm_reward_of(self.env)  # the env arrived without its reward (rl-zoo, YAML)
            except ValueError:
                pass  # fine for predict and evaluation; learn() says what is missing
        if self.seed is not None and "seed" not in (self.replay_buffer_kwargs or {}):
            # the model's seed seeds the alignment sampling too: same seed, same run
            self.replay_buffer_kwargs = {**(self.replay_buffer_kwargs or {}), "seed": self.seed}
        super()._setup_model()
        self._connect_buffer()
        self.schedule = RelaySchedule(self.n_envs, self.relay_lengths, self.seed, active=self.relay)
        self._build_task_agent()
        if self.align and self.alignment_callback is None:
            self.alignment_callback = RewardAlignmentCallback(self.vlm_reward, **self.alignment_kwargs)

    def _build_task_agent(self) -> None:
        """The second agent: a plain ``backbone`` with the VLM agent's settings that it takes, and no buffer of its
        own (``buffer_size=1``: it trains on the shared buffer's task-reward view)."""
        if not self.relay:
            self.task_agent = None
            return

        accepted = (init_keywords(self.backbone) or set()) - _NOT_SHARED  # follows **kwargs (DrQ passes SAC's on)
        attrs = {name: self.setting_attributes.get(name, name) for name in accepted}
        shared = {name: getattr(self, attr) for name, attr in attrs.items() if hasattr(self, attr)}
        if isinstance(shared.get("policy_kwargs"), dict):
            shared["policy_kwargs"] = dict(shared["policy_kwargs"])  # the backbone adds keys: not to ours
        # each backbone takes _init_setup_model (OffPolicyAlgorithm does not), and SB3 builds without an env
        # (env=None, as on load: the spaces are set below), which its annotation leaves out
        agent = self.backbone(self.policy_class, self.env, buffer_size=1,  # type: ignore[arg-type]
                              _init_setup_model=False, **shared)  # type: ignore[call-arg]
        if self.env is None:
            agent.observation_space, agent.action_space = self.observation_space, self.action_space
            agent.n_envs = self.n_envs
        agent._setup_model()
        self.task_agent = agent
        self._connect_buffer()

    def _excluded_save_params(self) -> list[str]:
        return super()._excluded_save_params() + [
            "vlm_reward", "task_agent", "alignment_callback", "schedule"]

    def _setup_learn(self, total_timesteps: int, callback: MaybeCallback = None, reset_num_timesteps: bool = True,
                     tb_log_name: str = "run", progress_bar: bool = False) -> tuple[int, BaseCallback]:
        if self.alignment_callback is not None:
            given = [] if callback is None else list(callback) if isinstance(callback, list) else [callback]
            # SB3 wraps a plain function (called with locals, globals) only when it gets the function itself
            callback = CallbackList([self.alignment_callback] + [c if isinstance(c, BaseCallback) else
                                                                 ConvertCallback(c) for c in given])
        if self.vlm_reward is None:
            raise ValueError(f"{type(self).__name__} has no VLM reward to train with: pass vlm_reward=..., or an env "
                             "built with "
                             "furl_wrappers.make_vlm_vec_env (FrameInInfo + VecFuzzyVLMReward)")
        total, callback = super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name,
                                               progress_bar)
        if self.task_agent is not None:
            self.task_agent.set_logger(PrefixLogger(self.logger, "task_agent/"))
            self.task_agent.num_timesteps = self.num_timesteps
        return total, callback

    def _connect_buffer(self) -> None:
        """Attach the VLM reward to the shared buffer and give the task agent its task-reward view."""
        buffer = self.replay_buffer
        if buffer is None:
            return
        if not isinstance(buffer, VLMReplayBuffer):
            raise TypeError(f"{type(self).__name__} needs a VLMReplayBuffer, got {type(buffer).__name__}")
        if self.vlm_reward is not None and buffer.vlm_reward is not self.vlm_reward:
            buffer.attach(self.vlm_reward)
        if self.task_agent is not None:
            self.task_agent.replay_buffer = buffer.task_reward_view(share_batch=True)

    def load_replay_buffer(self, path: Any, truncate_last_traj: bool = True) -> None:
        """SB3's ``load_replay_buffer``, then re-attach the VLM reward and the task agent's task-reward view."""
        super().load_replay_buffer(path, truncate_last_traj)
        self._connect_buffer()

    # ------------------------------------------------------------- relay hooks
    @property
    def relay_active(self) -> bool:
        """Whether relay is on (it ends for good at ``relay_threshold`` positive frames)."""
        return self.schedule.active

    def task_agent_acting(self) -> np.ndarray:
        """Bool ``(n_envs,)``: which envs the task agent acts in at the current step (all False once relay ends)."""
        if self.task_agent is None:
            return np.zeros(self.n_envs, dtype=bool)
        return self.schedule.task_agent_acting()

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
        mask = self.task_agent_acting()
        warmup = self.num_timesteps < learning_starts and not (self.use_sde and self.use_sde_at_warmup)
        action, buffer_action = super()._sample_action(learning_starts, action_noise, n_envs)
        if warmup or not mask.any():
            if not warmup:
                self.schedule.count(mask)
            return action, buffer_action
        assert self.task_agent is not None  # task_agent_acting() is all False without one
        obs = cast(np.ndarray, self._last_obs)  # set (not warm-up: SB3 asserts it), an array (indexed by env mask)
        unscaled, _ = self.task_agent.predict(obs[mask], deterministic=False)
        scaled = self.policy.scale_action(unscaled)
        scaled = np.clip(scaled + self.schedule.noise(self.relay_noise, scaled.shape), -1.0, 1.0)
        buffer_action = buffer_action.copy()
        buffer_action[mask] = scaled
        action = self.policy.unscale_action(buffer_action)
        self.schedule.count(mask)
        return action, buffer_action

    def _store_transition(self, replay_buffer: Any, buffer_action: np.ndarray, new_obs: Any, reward: np.ndarray,
                          dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self.schedule.advance(dones)
        assert isinstance(self.replay_buffer, VLMReplayBuffer)  # _connect_buffer checked it
        positives = self.replay_buffer.positive_count
        if self.schedule.active and positives >= self.relay_threshold:
            self.schedule.stop()
        acting = self.task_agent_acting()
        self.logger.record("furl/relay_on", int(self.relay_active))
        self.logger.record("furl/acting_agent_env0", "task" if acting[0] else "vlm", exclude=("csv", "tensorboard"))
        self.logger.record("furl/task_agent_acting_fraction", float(acting.mean()))
        self.logger.record("furl/relay_length", float(self.schedule.relay_length.mean()))
        self.logger.record("furl/positive_count", positives)
        self.logger.record("furl/task_agent_steps", self.schedule.task_agent_steps)
        self.logger.record("furl/vlm_steps", self.schedule.vlm_steps)

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """The VLM agent's ``train(n)`` on relabelled batches, then (while relaying) the task agent's ``train(n)`` on
        the task rewards of the same batches, in order: each counts, updates its targets and logs as its algorithm's
        own ``train(n)`` does."""
        second = self.task_agent if self.relay_active else None
        with shared_batches(self, second):
            super().train(gradient_steps, batch_size)
            if second is not None:
                second._current_progress_remaining = self._current_progress_remaining
                second.train(gradient_steps, batch_size)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The relay's own state beside SB3's (``get_parameters``), JSON-able: its schedule's
        (:meth:`~furl_wrappers.relay_schedule.RelaySchedule.state_dict`)."""
        return self.schedule.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Undo :meth:`state_dict` (``ValueError`` in one line when malformed)."""
        self.schedule.load_state_dict(state)

    # -------------------------------------------------------------- save/load
    def save(self, path: _CheckpointPath, exclude: Any = None, include: Any = None) -> None:
        """Save the VLM agent (SB3 format), the task agent, reward heads + optimiser and relay state in one zip.

        A path is written atomically (an interrupted save leaves the previous checkpoint intact) and gets a
        ``.zip`` suffix when it has none (as in SB3); a binary handle is written directly.
        """
        state, tensors = relay_checkpoint.relay_state(self)

        def save_sb3(handle: IO[bytes]) -> None:  # SB3's zip of the VLM agent + its pickle-free description
            raw = io.BytesIO()
            super(_Relay, self).save(raw, exclude, include)
            handle.write(serialization.with_safe_entry(raw.getvalue(), self))

        task = (None if self.task_agent is None else  # the task agent's zip gets its description too
                SimpleNamespace(save=lambda handle: serialization.save_model(self.task_agent, handle)))
        # an io.BufferedIOBase is a binary handle too: write_checkpoint takes anything not a path as one
        relay_checkpoint.write_checkpoint(cast("str | os.PathLike | IO[bytes]", path), save_sb3, task, state, tensors)

    @classmethod
    def load(cls, path: _CheckpointPath, env: Any = None, device: torch.device | str = "auto",
             custom_objects: dict[str, Any] | None = None, print_system_info: bool = False,
             force_reset: bool = True, trusted: bool = False, **kwargs: Any) -> Any:
        """Load a :meth:`save` checkpoint (a path or a binary handle); with ``env``, check it was made for the same
        task, encoder and spaces, restore the reward heads into the env's VLM reward (or ``vlm_reward=``), and restore
        RNG states so that ``learn(..., reset_num_timesteps=False)`` continues exactly (with ``load_replay_buffer``).

        Nothing is unpickled: both agents' pickled SB3 attributes are rebuilt from their safe descriptions
        (:func:`furl_wrappers.serialization.safe_custom_objects`). ``trusted=True`` loads a checkpoint without them
        (an older one) with SB3's unpickling, which runs the file's code: only for files you trust.

        Raises:
            CheckpointMismatchError: the checkpoint is for another task, encoder or observation/action space.
            UnsafeFileError: a pickled attribute has no safe description (and ``trusted`` is False).
            CorruptFileError: the file is truncated or corrupt.
        """
        # complete (else CorruptFileError); SB3 loads these bytes. An io.BufferedIOBase is read as a handle too
        raw, name = serialization.read_model_zip(cast("str | os.PathLike | IO[bytes]", path))
        state, tensors, task_bytes = relay_checkpoint.read_checkpoint(raw, name)
        safe = {} if trusted else serialization.safe_custom_objects(raw, name, cls)
        task_safe = ({} if trusted or task_bytes is None else serialization.safe_custom_objects(
            task_bytes, f"{name}:{relay_checkpoint.TASK_AGENT_ENTRY}", cls.backbone))
        if env is not None:
            if kwargs.get("vlm_reward") is None:
                try:
                    kwargs["vlm_reward"] = vlm_reward_of(env)  # the env arrived without its reward: look once
                except ValueError:
                    kwargs.pop("vlm_reward", None)  # no VLM reward on this env: checked without one
            probe = relay_checkpoint.env_identity(env, kwargs.get("vlm_reward"))
            relay_checkpoint.check_identity(state["identity"], probe)
        model = super().load(io.BytesIO(raw), env=env, device=device, custom_objects={**safe, **(custom_objects or {})},
                             print_system_info=print_system_info, force_reset=force_reset, **kwargs)
        if model.relay and task_bytes is None:  # saved with relay on: its task agent is in the file, or it is damaged
            raise CorruptFileError(f"{name!r}: relay on but no {relay_checkpoint.TASK_AGENT_ENTRY} (damaged or edited)")
        if task_bytes is not None and model.task_agent is not None:
            model.task_agent = cls.backbone.load(io.BytesIO(task_bytes), env=env, device=device, buffer_size=1,
                                                 custom_objects=task_safe)
            model._connect_buffer()
        relay_checkpoint.restore_relay_state(model, state, tensors)
        return model


class RelayPolicy(_Relay, SAC):
    """FuRL's relay RL over SB3 SAC (the paper's). Arguments not listed are SAC's, with the paper's defaults.

    Args:
        policy, env: as for ``SAC`` (env: a vector env with the VLM reward, e.g. ``make_vlm_vec_env``).
        vlm_reward: the :class:`~furl_wrappers.VLMReward` the env scores with (default: taken from ``env``).
        relay: use the relay's task agent (``False``: plain SAC on the VLM reward).
        relay_threshold: positive frames after which relay ends for good (2,500).
        relay_lengths: relay lengths drawn at each episode start ({50, 100, 150, 200}; any sequence, e.g. a range).
        relay_noise: std of the Gaussian noise on the task agent's actions, as a fraction of max_action (0.2).
        align: run :class:`~furl_wrappers.callbacks.RewardAlignmentCallback` inside ``learn`` (``False`` with a
            ``"frozen"``/``"raw"`` reward model: the paper's Relay baseline).
        alignment_kwargs: its arguments (margin, goal_margin, lr, batch_size, ...); the window k and the alignment
            store's capacity are the buffer's (``replay_buffer_kwargs``), the goal image is the VLM reward's.
        learning_rate: 1e-4; buffer_size: 1e6; learning_starts: 10,000 (uniform random steps); batch_size: 256;
            tau: 0.01; gamma: 0.99; target_entropy: ``"paper"`` = −|A|/2.
    """

    backbone = SAC

    def __init__(
        self,
        policy: Any,
        env: Any,
        *,
        vlm_reward: VLMReward | None = None,
        relay: bool = True,
        relay_threshold: int = 2500,
        relay_lengths: Sequence[int] = (50, 100, 150, 200),
        relay_noise: float = 0.2,
        align: bool = True,
        alignment_kwargs: dict[str, Any] | None = None,
        learning_rate: float = 1e-4,
        buffer_size: int = 1_000_000,
        learning_starts: int = 10_000,
        batch_size: int = 256,
        tau: float = 0.01,
        gamma: float = 0.99,
        target_entropy: str | float = "paper",
        replay_buffer_class: type | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        device: torch.device | str = "auto",
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            policy, env, vlm_reward=vlm_reward, relay=relay, relay_threshold=relay_threshold,
            relay_lengths=relay_lengths, relay_noise=relay_noise, align=align, alignment_kwargs=alignment_kwargs,
            learning_rate=learning_rate, buffer_size=buffer_size, learning_starts=learning_starts,
            batch_size=batch_size, tau=tau, gamma=gamma, target_entropy=target_entropy,
            replay_buffer_class=replay_buffer_class, replay_buffer_kwargs=replay_buffer_kwargs, seed=seed,
            device=device, _init_setup_model=_init_setup_model, **kwargs,
        )
