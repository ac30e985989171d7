"""DrQ for SB3: SAC from pixels with random-shift augmentation and a conv encoder trained by the critic.

SB3 has no DrQ (Yarats et al., 2021); the paper's pixel runs use it as the backbone (paper §5.4, Table 5).
:class:`DrQ` is an SB3 ``SAC`` subclass (``learn``, ``predict``, save/load, callbacks and the logger unchanged):

- **augmentation** — each gradient step, observations and next observations of the batch are shifted by up to
  ``image_pad`` (4) pixels, independently per sample and for obs and next obs, the same shift for all frames of
  a stack (:func:`random_shift`: DrQ's replicate-pad-and-random-crop);
- **one conv encoder** (:class:`DrQEncoder`: 4 conv layers × 32 channels, 3×3 kernels, strides (2, 1, 1, 1),
  VALID padding, then linear → LayerNorm → tanh to 50 features): the conv layers are shared by actor and critic
  and **updated by the critic loss only** — the actor reads them without gradient through its own linear →
  LayerNorm → tanh head (trained by the actor loss), and the critic holds its encoder fixed when scoring the
  actor's actions for the actor loss (:class:`DrQPolicy`); the target critic has its own copy, updated with τ;
- the paper's settings as defaults: learning rate 1e-4, batch 256, τ 0.01, γ 0.99, buffer 2e5, actor and
  critic (256, 256, 256), target entropy −|A|/2 (``"paper"``), 10,000 uniform-random warm-up steps.

Observations: uint8 ``(3·k, H, W)`` stacked frames (``make_metaworld_env(..., observation="pixels")``); the replay
buffer defaults to :class:`~furl_wrappers.pixel_buffer.PixelReplayBuffer` (each frame stored once).

Example:
    >>> import furl_wrappers
    >>> from furl_wrappers.drq import DrQ
    >>> env = furl_wrappers.make_metaworld_env("reach", observation="pixels", image_size=32, pixel_size=32,
    ...                                        max_episode_steps=20)
    >>> model = DrQ("CnnPolicy", env, learning_starts=10, batch_size=8, buffer_size=100)
    >>> _ = model.learn(20)
    >>> model.predict(env.reset()[0], deterministic=True)[0].shape
    (4,)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import ReplayBufferSamples, Schedule
from stable_baselines3.sac.policies import SACPolicy
from torch import nn

from furl_wrappers.pixel_buffer import PixelReplayBuffer, check_pixel_space
from furl_wrappers.validation import check_int

__all__ = ["DrQ", "DrQPolicy", "DrQEncoder", "random_shift"]


def random_shift(images: th.Tensor, pad: int = 4) -> th.Tensor:
    """DrQ's augmentation: each image shifted by ``(dy, dx)`` drawn uniformly from ``[-pad, pad]²``, edges
    replicated (= pad by ``pad`` with edge values, then a random crop of the original size).

    Args:
        images: ``(B, C, H, W)``, any dtype; all ``C`` channels of a sample (a frame stack) share one shift.
        pad: the largest shift in pixels (4 in DrQ); 0 returns ``images``.

    Returns:
        ``(B, C, H, W)``, same dtype and device. Shifts are drawn from torch's global CPU generator.
    """
    if pad == 0:
        return images
    batch, _, height, width = images.shape
    shifts = th.randint(0, 2 * pad + 1, (batch, 2)).to(images.device) - pad
    rows = (th.arange(height, device=images.device)[None, :] + shifts[:, :1]).clamp(0, height - 1)  # (B, H)
    cols = (th.arange(width, device=images.device)[None, :] + shifts[:, 1:]).clamp(0, width - 1)  # (B, W)
    batch_index = th.arange(batch, device=images.device)[:, None, None]
    shifted = images.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return shifted.permute(0, 3, 1, 2).contiguous()


class DrQEncoder(BaseFeaturesExtractor):
    """DrQ's conv encoder: conv layers with ReLU (VALID padding), flattened, then linear → LayerNorm → tanh.

    Args:
        observation_space: uint8 ``(3·k, H, W)`` (SB3 divides by 255 before this module).
        features_dim: embedding size (50 in the paper).
        channels, kernels, strides: per conv layer ((32,)*4, (3,)*4, (2, 1, 1, 1) in the paper).
    """

    def __init__(self, observation_space: spaces.Box, features_dim: int = 50,
                 channels: Sequence[int] = (32, 32, 32, 32), kernels: Sequence[int] = (3, 3, 3, 3),
                 strides: Sequence[int] = (2, 1, 1, 1)) -> None:
        super().__init__(observation_space, check_int("features_dim", features_dim, hint="50 in the paper"))
        if not len(channels) == len(kernels) == len(strides) or not channels:
            raise ValueError(f"channels, kernels and strides need one entry per conv layer, got {list(channels)}, "
                             f"{list(kernels)}, {list(strides)}")
        layers: list[nn.Module] = []
        depth = observation_space.shape[0]
        for out, kernel, stride in zip(channels, kernels, strides):
            layers += [nn.Conv2d(depth, int(out), int(kernel), int(stride), padding=0), nn.ReLU()]
            depth = int(out)
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with th.no_grad():
            flat = self.convs(th.zeros(1, *observation_space.shape)).shape[1]
        self.head = nn.Sequential(nn.Linear(flat, features_dim), nn.LayerNorm(features_dim), nn.Tanh())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.head(self.convs(observations))


class _ActorFeatures(BaseFeaturesExtractor):
    """The actor's encoder: the critic's conv layers without gradient (the actor loss never trains them), then the
    actor's own linear → LayerNorm → tanh head, trained by the actor loss (as in DrQ)."""

    def __init__(self, encoder: DrQEncoder) -> None:
        super().__init__(encoder._observation_space, encoder.features_dim)
        self.convs = encoder.convs  # shared: a submodule here too, but not in the actor's optimizer
        linear = encoder.head[0]
        assert isinstance(linear, nn.Linear)  # DrQEncoder's head: Linear → LayerNorm → Tanh
        self.head = nn.Sequential(nn.Linear(linear.in_features, linear.out_features),
                                  nn.LayerNorm(linear.out_features), nn.Tanh())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        with th.no_grad():
            trunk = self.convs(observations)
        return self.head(trunk)


class _DrQCritic(ContinuousCritic):
    """SB3's ``ContinuousCritic`` whose encoder gets gradients from the TD loss only: scoring actions that carry a
    gradient (the actor's, for the actor loss) uses the features without one."""

    def forward(self, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        with th.set_grad_enabled(th.is_grad_enabled() and not actions.requires_grad):
            features = self.extract_features(obs, self.features_extractor)
        qvalue_input = th.cat([features, actions], dim=1)
        return tuple(q_net(qvalue_input) for q_net in self.q_networks)


class DrQPolicy(SACPolicy):
    """SAC policy with DrQ's shared conv encoder. Arguments as SB3's ``SACPolicy``, with DrQ's defaults:
    ``net_arch`` (256, 256, 256) for actor and critic, ``features_extractor_class`` :class:`DrQEncoder` (or a
    subclass). The conv layers are always shared and trained by the critic (``share_features_extractor`` must stay
    True); the actor has its own head on top of them."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Box, lr_schedule: Schedule,
                 net_arch: list[int] | dict[str, list[int]] | None = None,
                 features_extractor_class: type[BaseFeaturesExtractor] = DrQEncoder,
                 share_features_extractor: bool = True, **kwargs: Any) -> None:
        if share_features_extractor is not True:
            raise ValueError("DrQPolicy: share_features_extractor must be True (DrQ's encoder is shared by actor and "
                             f"critic and trained by the critic), got {share_features_extractor!r}")
        super().__init__(observation_space, action_space, lr_schedule,
                         net_arch=[256, 256, 256] if net_arch is None else net_arch,
                         features_extractor_class=features_extractor_class,
                         share_features_extractor=True, **kwargs)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> Any:
        # share_features_extractor=False inside the critic: SB3's critic would compute a shared encoder's features
        # without gradient; in DrQ the critic is the encoder's trainer
        critic_kwargs = self._update_features_extractor({**self.critic_kwargs, "share_features_extractor": False},
                                                        features_extractor)
        return _DrQCritic(**critic_kwargs).to(self.device)

    def _build(self, lr_schedule: Schedule) -> None:
        self.critic = self.make_critic(features_extractor=None)  # owns the encoder
        encoder = self.critic.features_extractor
        if not isinstance(encoder, DrQEncoder):
            raise TypeError(f"DrQPolicy needs a DrQEncoder (or subclass) as features_extractor_class, got "
                            f"{type(encoder).__name__}")
        self.actor = self.make_actor(features_extractor=_ActorFeatures(encoder))
        actor_parameters = [p for name, p in self.actor.named_parameters()
                            if not name.startswith("features_extractor.convs")]
        # SB3 types optimizer_class as type[Optimizer], whose own __init__ takes no lr (SB3 ignores this too)
        self.actor.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            actor_parameters, lr=lr_schedule(1), **self.optimizer_kwargs)
        self.critic_target = self.make_critic(features_extractor=None)  # its own encoder copy, updated with tau
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1),  # type: ignore[call-arg]
                                                     **self.optimizer_kwargs)
        self.critic_target.set_training_mode(False)


class _AugmentedSamples:
    """A replay buffer whose ``sample`` returns :func:`random_shift`-augmented observations and next observations
    (what ``SAC.train`` reads during one :meth:`DrQ.train` call)."""

    def __init__(self, buffer: Any, pad: int) -> None:
        self.buffer, self.pad = buffer, pad

    def __getattr__(self, name: str) -> Any:
        return getattr(self.buffer, name)

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        samples = self.buffer.sample(batch_size, env)
        return samples._replace(observations=random_shift(samples.observations, self.pad),
                                next_observations=random_shift(samples.next_observations, self.pad))


class DrQ(SAC):
    """DrQ (SAC from pixels, see the module) with the paper's pixel settings as defaults.

    Args:
        policy: ``"CnnPolicy"`` (= :class:`DrQPolicy`) or a policy class.
        env: an env with uint8 ``(3·k, H, W)`` observations.
        image_pad: the random shift's largest offset in pixels (4; 0 turns augmentation off).
        learning_rate: 1e-4; buffer_size: 2e5; learning_starts: 10,000; batch_size: 256; tau: 0.01; gamma: 0.99;
            target_entropy: ``"paper"`` = −|A|/2. The rest: SB3 ``SAC``'s arguments.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"CnnPolicy": DrQPolicy, "DrQPolicy": DrQPolicy}

    def __init__(
        self,
        policy: str | type[SACPolicy],
        env: Any,
        *,
        image_pad: int = 4,
        learning_rate: float = 1e-4,
        buffer_size: int = 200_000,
        learning_starts: int = 10_000,
        batch_size: int = 256,
        tau: float = 0.01,
        gamma: float = 0.99,
        target_entropy: str | float = "paper",
        replay_buffer_class: type | None = None,
        _init_setup_model: bool = True,
        **kwargs: Any,
    ) -> None:
        self.image_pad = check_int("image_pad", image_pad, 0, hint="4 in DrQ")
        super().__init__(policy, env, learning_rate=learning_rate, buffer_size=buffer_size,
                         learning_starts=learning_starts, batch_size=batch_size, tau=tau, gamma=gamma,
                         target_entropy=target_entropy, replay_buffer_class=replay_buffer_class,
                         _init_setup_model=False, **kwargs)
        if _init_setup_model:
            self._setup_model()

    def _setup_model(self) -> None:
        check_pixel_space(self.observation_space, type(self).__name__)
        if self.replay_buffer_class is None:
            self.replay_buffer_class = PixelReplayBuffer
        if isinstance(self.target_entropy, str) and self.target_entropy == "paper":
            assert self.action_space.shape is not None  # a Box (SAC checks it)
            self.target_entropy = -float(np.prod(self.action_space.shape)) / 2.0
        super()._setup_model()

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """SAC's update on randomly shifted observations (:func:`random_shift`, ``image_pad``)."""
        buffer = self.replay_buffer
        self.replay_buffer = cast(ReplayBuffer, _AugmentedSamples(buffer, self.image_pad))  # a duck-typed view
        try:
            super().train(gradient_steps, batch_size)
        finally:
            self.replay_buffer = buffer
