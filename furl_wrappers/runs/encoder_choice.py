"""Which VLM a run scores with: the one asked for (``--vlm``, else the YAML's, else LIV), or — when the default is
unavailable offline — the shipped offline VLM ``furl-mw-vlm``, then random-clip, each said plainly.

Example:
    >>> wrapper_kwargs([{"furl_wrappers.wrappers.VecFuzzyVLMReward": {"vlm": "liv", "rho": 0.05}}])
    [{'vlm': 'liv', 'rho': 0.05}]
"""

from __future__ import annotations

from typing import Any, Callable

from furl_wrappers.encoders import OFFLINE_VLM, CorruptCheckpointError, ModelUnavailableError, make_encoder
from furl_wrappers.presets import get_preset
from furl_wrappers.runs.zoo_config import ConfigError

__all__ = ["OFFLINE_VLM_NOTICE", "NOT_PRETRAINED_NOTICE", "wrapper_kwargs", "choose_encoder"]

OFFLINE_VLM_NOTICE = (
    "NOTE: using furl-mw-vlm, the toolkit's offline VLM (a small Meta-World frame encoder trained on the 40 tasks "
    "outside MT10 against frozen all-MiniLM-L6-v2; see furl_wrappers/assets/furl-mw-vlm.md). It is neither LIV nor "
    "CLIP: for the paper's VLMs pass --vlm liv (hub), --vlm liv:DIR (LIV's model.pt and CLIP's tokenizer saved in "
    "DIR), or --vlm openai/clip-vit-base-patch32 / a local CLIP directory."
)

NOT_PRETRAINED_NOTICE = (
    "NOTE: the VLM is random-clip, which is NOT pretrained: its reward carries no language meaning, so this run "
    "shows the machinery, not FuRL's language grounding. To use a real VLM, pass --vlm openai/clip-vit-base-patch32 "
    "on a machine that can reach the Hugging Face hub, --vlm /path/to/a/local/clip-checkpoint, or --vlm liv."
)


def wrapper_kwargs(vec_spec: Any) -> list[dict[str, Any]]:
    """The keyword-argument dicts of the YAML's ``vec_env_wrapper`` entries (the config's own objects)."""
    items = vec_spec if isinstance(vec_spec, list) else [vec_spec]
    return [kwargs for item in items if isinstance(item, dict) for kwargs in item.values() if isinstance(kwargs, dict)]


def choose_encoder(vlm: str | None, device: str, vec_spec: Any, preset: str, say: Callable[[str], None]
                   ) -> tuple[Any, str, bool, str]:
    """The encoder for the run, the name it was built from, whether it fell back (offline), and the image preset
    the run will use (the offline fallbacks run on the fast path, which the offline VLM was trained on).

    Args:
        vlm: ``--vlm`` (``None``: the YAML's, else LIV; only then may a missing model fall back).
        device: the torch device.
        vec_spec: the YAML's ``vec_env_wrapper`` entry.
        preset: the image preset asked for.
        say: prints one line.
    """
    yaml_vlm = next((kwargs["vlm"] for kwargs in wrapper_kwargs(vec_spec) if "vlm" in kwargs), None)
    requested = vlm or yaml_vlm or "liv"
    if str(requested).startswith(OFFLINE_VLM) and preset != "fast":
        raise ConfigError(f"{OFFLINE_VLM} runs on the fast image path it was trained on: pass --image-preset fast "
                          f"(got image preset {preset!r})")
    try:
        return make_encoder(requested, device=device, **get_preset(preset).encoder_kwargs(device)), \
            requested, False, preset
    except ModelUnavailableError as exc:
        if vlm is not None:
            raise  # asked for explicitly: do not silently swap it
        say(f"[furl] the default VLM {requested!r} is unavailable ({exc}).")
    if preset != "fast":
        say(f"[furl] The fallback VLMs run on the fast image path: image preset fast instead of {preset!r}.")
    fast = get_preset("fast").encoder_kwargs(device)
    try:
        encoder = make_encoder(OFFLINE_VLM, device=device)
        say(f"[furl] Falling back to {OFFLINE_VLM}, the offline VLM shipped with furl_wrappers.")
        say(OFFLINE_VLM_NOTICE)
        return encoder, OFFLINE_VLM, True, "fast"
    except (ModelUnavailableError, CorruptCheckpointError) as exc:
        say(f"[furl] the offline VLM {OFFLINE_VLM!r} cannot be loaded either ({exc}).")
    say("[furl] Falling back to random-clip.")
    return make_encoder("random-clip", device=device, **fast), "random-clip", True, "fast"
