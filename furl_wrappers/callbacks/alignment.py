"""RewardAlignmentCallback: FuRL's reward alignment as an SB3 callback (one alignment step per env step).

Each call after warm-up takes one Adam step on the reward model's heads:

- **stage 1** (before the first successful episode; only with a goal image): neg-neg pairs of frames ranked by
  their embedding distance to the goal image (:func:`~furl_wrappers.losses.neg_neg_goal_loss`); the frames are drawn
  from the whole replay buffer, the unfinished episode included, as in the reference code
  (``stage1_frames="failed"``: from the ring of failed-episode frames instead);
- **stage 2** (once a successful episode has given a usable (positive, negative, lag-k positive) triple, which
  also needs one failed episode and a success reached at step ≥ k): pos-neg + pos-pos
  (:func:`~furl_wrappers.losses.pos_neg_loss` + :func:`~furl_wrappers.losses.pos_pos_loss`).

It needs the model's replay buffer to be a :class:`~furl_wrappers.vlm_buffer.VLMReplayBuffer` and a
:class:`~furl_wrappers.VLMReward` with learned heads: pass it (``RelayPolicy`` does), or it is taken from the
buffer, else from the training env (``make_vlm_vec_env``'s ``VecFuzzyVLMReward``); the callback attaches it to
the buffer when the buffer has none. The goal image is the VLM reward's (``goal_image=`` when it is built): without
one there is no stage 1. The alignment store's capacity, the window k and the sampling seed are the buffer's.
Logs under ``furl/``: stage, losses, mean positive/negative/lag scores, positive count.

Example:
    >>> from stable_baselines3 import SAC
    >>> import furl_wrappers
    >>> from furl_wrappers.vlm_buffer import VLMReplayBuffer
    >>> from furl_wrappers.callbacks import RewardAlignmentCallback
    >>> venv = furl_wrappers.make_vlm_vec_env("reach", vlm="random-clip:tiny", env_kwargs={"image_size": 32})
    >>> model = SAC("MlpPolicy", venv, replay_buffer_class=VLMReplayBuffer, learning_starts=10, buffer_size=1000)
    >>> _ = model.learn(30, callback=RewardAlignmentCallback(batch_size=16))
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from stable_baselines3.common.callbacks import BaseCallback

from furl_wrappers.losses import goal_mask, neg_neg_goal_loss, pos_neg_loss, pos_pos_loss
from furl_wrappers.validation import check_int, check_number
from furl_wrappers.vlm_buffer import VLMReplayBuffer
from furl_wrappers.vlm_reward import VLMReward
from furl_wrappers.wrappers import vlm_reward_of

__all__ = ["RewardAlignmentCallback", "STAGE1_FRAMES"]

#: where stage-1 batches come from: every stored frame (the reference code's), or the failed-episode ring
STAGE1_FRAMES = ("replay", "failed")


def _adam(params: list, lr: float) -> torch.optim.Optimizer:
    """Adam for the heads' eight small tensors: the fused kernel where torch has it (CPU since torch 2.4, CUDA),
    else the multi-tensor one. On tensors this small the per-tensor Python loop costs more than the arithmetic
    (BENCHMARKS.md, alignment step)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


class RewardAlignmentCallback(BaseCallback):
    """Trains the reward model's heads with FuRL's ranking losses while SB3 trains the policy.

    Args:
        vlm_reward: the shared :class:`~furl_wrappers.VLMReward` with learned heads (default: the buffer's, else the
            training env's).
        margin: δ of the ranking losses (0.1, as in the reference code that runs).
        goal_margin: δ' of the stage-1 goal-distance mask (0.25, the reference code's; the paper's table says 0.2).
        lr: Adam learning rate of the heads (1e-4).
        batch_size: frames (or triples) per alignment step (256).
        warmup_steps: no alignment before this many env steps (default: the model's ``learning_starts``).
        steps_per_call: alignment steps per callback call (one per vector-env step, like SAC's gradient steps).
        stage1_frames: where stage-1 batches come from: ``"replay"`` (every stored frame, the reference code's) or
            ``"failed"`` (the alignment store's ring of failed-episode frames).
        verbose: SB3 verbosity.
    """

    def __init__(
        self,
        vlm_reward: VLMReward | None = None,
        *,
        margin: float = 0.1,
        goal_margin: float = 0.25,
        lr: float = 1e-4,
        batch_size: int = 256,
        warmup_steps: int | None = None,
        steps_per_call: int = 1,
        stage1_frames: str = "replay",
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if vlm_reward is not None and not isinstance(vlm_reward, VLMReward):
            raise TypeError(f"vlm_reward must be a furl_wrappers.VLMReward, got {type(vlm_reward).__name__}")
        self.margin = check_number("margin", margin, low=0.0, hint="0.1 in the reference code")
        self.goal_margin = check_number("goal_margin", goal_margin, low=0.0, hint="0.25 in the reference code")
        self.lr = check_number("lr", lr, low=0.0, low_open=True, hint="1e-4 in the paper")
        self.batch_size = check_int("batch_size", batch_size, hint="256 in the paper")
        self.steps_per_call = check_int("steps_per_call", steps_per_call)
        self.warmup_steps = None if warmup_steps is None else check_int("warmup_steps", warmup_steps, 0)
        if stage1_frames not in STAGE1_FRAMES:
            raise ValueError(f"stage1_frames must be one of {list(STAGE1_FRAMES)}, got {stage1_frames!r}")
        self.stage1_frames = stage1_frames
        self.vlm_reward = vlm_reward
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending_optimizer_state: dict | None = None  # from load_state_dict(), applied in bind()
        self.stage = 0
        self.alignment_steps = 0
        self.buffer: VLMReplayBuffer | None = None

    # ------------------------------------------------------------------ set-up
    def _init_callback(self) -> None:
        buffer = getattr(self.model, "replay_buffer", None)
        if not isinstance(buffer, VLMReplayBuffer):
            raise TypeError(
                f"RewardAlignmentCallback needs the model's replay buffer to be VLMReplayBuffer, got "
                f"{type(buffer).__name__}: pass replay_buffer_class=furl_wrappers.vlm_buffer.VLMReplayBuffer"
            )
        vlm_reward = self.vlm_reward or buffer.vlm_reward
        if vlm_reward is None:
            vlm_reward = vlm_reward_of(self.training_env)
        self.bind(buffer, cast(VLMReward, vlm_reward))  # a buffer's reward is the env's VLMReward
        if self.warmup_steps is None:
            self.warmup_steps = int(getattr(self.model, "learning_starts", 0))

    def bind(self, buffer: VLMReplayBuffer, vlm_reward: VLMReward) -> None:
        """Attach the VLM reward to the buffer (if it has none) and create the heads' optimiser (done at training
        start; call it yourself to use :meth:`align_once` outside ``learn``)."""
        if not vlm_reward.trainable:
            raise ValueError(
                f"the reward model's mode is {vlm_reward.reward_model.mode!r}: only mode='learned' has heads to "
                "align (use 'frozen'/'raw' without this callback)"
            )
        if buffer.vlm_reward is None:
            buffer.attach(vlm_reward)
        elif buffer.vlm_reward is not vlm_reward:
            raise ValueError("the buffer relabels with another VLM reward than the one this callback aligns: "
                             "pass the same VLMReward to both")
        self.vlm_reward, self.buffer = vlm_reward, buffer
        if self.optimizer is None:
            params = [p for p in vlm_reward.reward_model.parameters() if p.requires_grad]
            self.optimizer = _adam(params, self.lr)
            self._apply_pending_optimizer_state()

    def _apply_pending_optimizer_state(self) -> None:
        if self.optimizer is not None and self._pending_optimizer_state is not None:
            self.optimizer.load_state_dict(self._pending_optimizer_state)
            self._pending_optimizer_state = None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps: ``stage`` and ``alignment_steps`` (ints) and ``optimizer``, the heads'
        optimiser state (torch's ``state_dict``, tensors; ``None`` before :meth:`bind`)."""
        return {"stage": self.stage, "alignment_steps": self.alignment_steps,
                "optimizer": None if self.optimizer is None else self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Undo :meth:`state_dict` (the optimiser state is applied when the optimiser exists, at :meth:`bind`)."""
        self.stage, self.alignment_steps = int(state["stage"]), int(state["alignment_steps"])
        self._pending_optimizer_state = state.get("optimizer")
        self._apply_pending_optimizer_state()

    # -------------------------------------------------------------------- step
    def _on_step(self) -> bool:
        assert self.warmup_steps is not None  # set by _init_callback
        if self.num_timesteps <= self.warmup_steps:
            return True
        for _ in range(self.steps_per_call):
            self.align_once()
        return True

    def align_once(self) -> dict[str, float]:
        """One alignment step on a fresh batch; returns (and logs) its statistics."""
        if self.buffer is None or self.optimizer is None or self.vlm_reward is None:  # bind sets all three
            raise RuntimeError("call bind(buffer, reward_model) first (learn() does it at training start)")
        store = self.buffer.alignment if self.buffer.embedding_dim else None
        model = self.vlm_reward.reward_model
        if store is not None and store.can_sample_triples():
            self.stage = 2
            triples = store.sample_triples(self.batch_size)
            assert triples is not None  # can_sample_triples()
            pos, neg, lag = (torch.as_tensor(x, device=model.device) for x in triples)
            scores = model(torch.cat([pos, neg, lag]))
            r_pos, r_neg, r_lag = scores.split(self.batch_size)
            loss_pn = pos_neg_loss(r_pos, r_neg, self.margin)
            loss_pp = pos_pos_loss(r_pos, r_lag, self.margin)
            loss = loss_pn + loss_pp
            names: tuple[str, ...] = ("loss_pos_neg", "loss_pos_pos", "score_pos", "score_neg", "score_lag")
            values = torch.stack([loss_pn, loss_pp, r_pos.mean(), r_neg.mean(), r_lag.mean()]).detach()
        elif store is not None and self.vlm_reward.has_goal:
            # no usable (pos, neg, lag) triple yet: the reference code keeps to stage 1 until there is one
            batch = (self.buffer.sample_goal_frames(self.batch_size) if self.stage1_frames == "replay"
                     else store.sample_negatives(self.batch_size))
            if batch is None:
                return {}
            self.stage = 1
            emb, dist = (torch.as_tensor(x, device=model.device) for x in batch)
            scores = model(emb)
            mask = goal_mask(dist, self.goal_margin)
            loss = neg_neg_goal_loss(scores, dist, self.margin, self.goal_margin, mask=mask)
            names = ("loss_neg_neg", "score_neg", "goal_pairs")
            values = torch.stack([loss, scores.mean(), mask.sum()]).detach()
        else:
            return {}
        stats = dict(zip(names, values.tolist()))  # one host transfer for all statistics
        losses = {k: v for k, v in stats.items() if k.startswith("loss")}
        if not all(math.isfinite(v) for v in losses.values()):  # before the step: never write NaN into the heads
            raise ValueError(
                f"RewardAlignmentCallback: stage-{self.stage} alignment loss is not finite "
                f"({', '.join(f'{k}={v}' for k, v in losses.items())}) at alignment step {self.alignment_steps}: "
                f"the reward model's heads or the stored embeddings hold NaN/inf (check the encoder, or lower lr)")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.alignment_steps += 1
        stats.update(loss=float(sum(v for k, v in stats.items() if k.startswith("loss"))), stage=float(self.stage),
                     positive_count=float(store.positive_count))
        if getattr(self, "model", None) is not None:
            for key, value in stats.items():
                self.logger.record(f"furl/{key}", value)
        return stats
