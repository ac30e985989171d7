"""Headless OpenGL selection and fast, upright offscreen frames for Meta-World.

Meta-World's scene asks for a 4096² shadow map, reflective materials and 4× multisampling. On a software
renderer (Mesa llvmpipe through EGL, what a headless CPU machine has) that makes every frame several times slower
(BENCHMARKS.md has the measurement). The
``"fast"`` quality turns shadows, reflections and multisampling off and coarsens the tessellation of analytic
shapes, for this renderer only (the env's model is left as it was); the picture is nearly identical
(``benchmarks/render.py``). ``"full"`` keeps Meta-World's settings.

Every :class:`FrameRenderer` owns its own GL context and makes it current before each frame, so several
environments in one process (the usual SB3 ``DummyVecEnv`` case) never draw into each other's context.

Example:
    >>> import furl_wrappers
    >>> env = furl_wrappers.make_metaworld_env("drawer-open", image_size=64)
    >>> _ = env.reset()
    >>> env.render().shape
    (64, 64, 3)
"""

from __future__ import annotations

import atexit
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any, Literal, cast

import gymnasium as gym
import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import mujoco

__all__ = [
    "CAMERAS",
    "RENDER_QUALITIES",
    "RenderingUnavailableError",
    "configure_headless_gl",
    "import_mujoco",
    "ensure_headless_context",
    "check_camera",
    "check_image_size",
    "check_render_quality",
    "FrameRenderer",
    "OffscreenRenderWrapper",
]

#: Cameras defined in every Meta-World scene. ``corner2`` (id 2) is the paper's camera.
CAMERAS: tuple[str, ...] = ("topview", "corner", "corner2", "corner3", "corner4", "behindGripper", "gripperPOV")
RENDER_QUALITIES: tuple[str, ...] = ("fast", "full")
RenderQuality = Literal["fast", "full"]

_GL_HELP = (
    "Install the system OpenGL packages for headless rendering. On Debian/Ubuntu: "
    "`apt-get install -y libegl1 libgl1-mesa-dri libegl-mesa0` (with an NVIDIA GPU the driver's libEGL "
    "works too); on Fedora/RHEL: `dnf install mesa-libEGL mesa-dri-drivers`; on conda: "
    "`conda install -c conda-forge mesalib`. Then use MUJOCO_GL=egl (the default here when no display is "
    "present), or MUJOCO_GL=osmesa with libosmesa6 installed. On a desktop, MUJOCO_GL=glfw uses the window system."
)


class RenderingUnavailableError(RuntimeError):
    """No OpenGL context could be created for offscreen rendering; the message says what to install."""


def configure_headless_gl() -> str | None:
    """Choose EGL for MuJoCo when there is no display and the user has not chosen a backend.

    Must run before MuJoCo is imported (MuJoCo reads ``MUJOCO_GL`` once, at import). ``import furl_wrappers``
    calls it. A value the user set is never overridden.

    Returns:
        The ``MUJOCO_GL`` value now in effect, or ``None`` when MuJoCo will pick its default (GLFW).
    """
    if "MUJOCO_GL" not in os.environ and sys.platform.startswith("linux"):
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ["MUJOCO_GL"] = "egl"
            if os.environ.get("PYOPENGL_PLATFORM", "egl").lower() == "egl":
                os.environ["PYOPENGL_PLATFORM"] = "egl"
    return os.environ.get("MUJOCO_GL")


def _no_display() -> bool:
    return sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")


def ensure_headless_context(mujoco: Any) -> None:
    """Make MuJoCo's offscreen contexts EGL when MuJoCo was imported before this package without ``MUJOCO_GL``
    on a machine without a display (it then picked GLFW, which needs one): the import order is the user's.

    MuJoCo binds its context class once, at import (``mujoco.gl_context.GLContext``, what ``mujoco.Renderer``
    instantiates); rebinding it to the EGL class is what ``MUJOCO_GL=egl`` before the import would have done.

    Raises:
        RenderingUnavailableError: when EGL cannot be loaded either, naming the real cause and the fix.
    """
    from mujoco import gl_context

    chosen = getattr(gl_context, "_MUJOCO_GL", None)
    if not _no_display() or chosen not in ("", "glfw", "enable", "enabled", "on", "true", "1"):
        return
    current = getattr(gl_context, "GLContext", None)
    if current is not None and current.__module__.startswith("mujoco.egl"):
        return
    try:
        from mujoco.egl import GLContext  # needs PYOPENGL_PLATFORM unset or "egl"
    except Exception as exc:  # noqa: BLE001 - any failure: say what happened and how to avoid it
        raise RenderingUnavailableError(
            "mujoco was imported before furl_wrappers without MUJOCO_GL, so it chose GLFW, which needs a display "
            f"(none here), and EGL could not be loaded instead ({exc}). Set MUJOCO_GL=egl in the environment before "
            "the first `import mujoco` (or import furl_wrappers first)."
        ) from exc
    gl_context.GLContext = GLContext
    os.environ.setdefault("MUJOCO_GL", "egl")


def import_mujoco() -> Any:
    """Import MuJoCo after :func:`configure_headless_gl`, turning a missing GL library into a clear error."""
    configure_headless_gl()
    try:
        import mujoco
    except (ImportError, OSError, AttributeError) as exc:  # libEGL/libOSMesa missing or unusable
        raise RenderingUnavailableError(
            f"MuJoCo could not load its OpenGL backend (MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {exc}. "
            + _GL_HELP
        ) from exc
    return mujoco


_LIVE_RENDERERS: weakref.WeakSet[FrameRenderer] = weakref.WeakSet()
_ATEXIT_REGISTERED = False


def _close_live_renderers() -> None:
    for renderer in list(_LIVE_RENDERERS):
        renderer.close()


def check_image_size(image_size: int) -> int:
    """``image_size`` as an int in [16, 2048], else a ``ValueError`` naming the valid range."""
    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or not 16 <= image_size <= 2048:
        raise ValueError(f"image_size must be an integer in [16, 2048] (224 for CLIP/LIV), got {image_size!r}")
    return int(image_size)


def check_camera(camera: str) -> str:
    """``camera`` if it is one of :data:`CAMERAS`, else a ``ValueError`` listing them."""
    if camera not in CAMERAS:
        raise ValueError(f"camera must be one of {list(CAMERAS)}, got {camera!r}")
    return camera


def check_render_quality(render_quality: str) -> RenderQuality:
    """``render_quality`` if it is ``"fast"`` or ``"full"``, else a ``ValueError``."""
    if render_quality in RENDER_QUALITIES:
        return cast(RenderQuality, render_quality)
    raise ValueError(f"render_quality must be one of {list(RENDER_QUALITIES)}, got {render_quality!r}")


class FrameRenderer:
    """Renders upright RGB frames of one MuJoCo model from a fixed camera.

    Args:
        model: the ``mujoco.MjModel`` (left unchanged).
        data: the ``mujoco.MjData`` whose current state is drawn.
        camera: a camera name of the model, e.g. ``"corner2"``.
        image_size: square frame side in pixels.
        render_quality: ``"fast"`` (no shadows, reflections or multisampling) or ``"full"`` (the model's own
            settings).

    Raises:
        ValueError: for an unknown camera, size or quality.
        RenderingUnavailableError: if no OpenGL context can be created.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        data: mujoco.MjData,
        camera: str = "corner2",
        image_size: int = 224,
        render_quality: RenderQuality = "fast",
    ) -> None:
        global _ATEXIT_REGISTERED
        self.image_size = check_image_size(image_size)
        self.render_quality = check_render_quality(render_quality)
        mujoco = import_mujoco()
        self._mujoco = mujoco
        self.camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if self.camera_id < 0:
            names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
            raise ValueError(f"camera must be one of {names}, got {camera!r}")
        self.camera = camera
        self.model = model
        self.data = data
        # The render context reads these model settings once, when it is created: set them for this context
        # and restore them, so the env's model (and any other renderer of it) is left as it was.
        vis = model.vis
        fields = ("shadowsize", "offsamples", "numslices", "numstacks", "numquads")
        saved = (vis.global_.offwidth, vis.global_.offheight, *(getattr(vis.quality, f) for f in fields))
        vis.global_.offwidth = max(vis.global_.offwidth, self.image_size)
        vis.global_.offheight = max(vis.global_.offheight, self.image_size)
        if self.render_quality == "fast":
            # No shadow map, no multisampling, and coarser tessellation of the few analytic shapes (spheres,
            # capsules: the goal markers, the gripper pads) and of planes: ~10 % more, a 0.01 mean pixel change.
            for field, value in zip(fields, (0, 0, 8, 8, 1)):
                setattr(vis.quality, field, value)
        ensure_headless_context(mujoco)
        try:
            self._renderer = mujoco.Renderer(model, height=self.image_size, width=self.image_size)
        except Exception as exc:  # noqa: BLE001 - any GL failure here means "no usable context"
            raise RenderingUnavailableError(
                f"Could not create an OpenGL context for offscreen rendering "
                f"(MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}): {exc}. " + _GL_HELP
            ) from exc
        finally:
            vis.global_.offwidth, vis.global_.offheight = saved[:2]
            for field, value in zip(fields, saved[2:]):
                setattr(vis.quality, field, value)
        if self.render_quality == "fast":
            flags = self._renderer.scene.flags
            flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._buffer = np.empty((self.image_size, self.image_size, 3), dtype=np.uint8)
        _LIVE_RENDERERS.add(self)
        if not _ATEXIT_REGISTERED:
            # Registered after MuJoCo's own EGL atexit hook, so it runs first (atexit is LIFO): contexts are freed
            # while the display still exists, with no noise at interpreter exit.
            atexit.register(_close_live_renderers)
            _ATEXIT_REGISTERED = True

    def render(self) -> np.ndarray:
        """Draw the current state.

        Returns:
            A new upright RGB frame, uint8 ``(image_size, image_size, 3)``.
        """
        if self._renderer is None:
            raise RuntimeError("render() called on a closed FrameRenderer")
        self._renderer.update_scene(self.data, camera=self.camera_id)
        self._renderer.render(out=self._buffer)
        # Meta-World's fixed cameras are mounted upside down: flip once here so frames are upright.
        return np.ascontiguousarray(self._buffer[::-1])

    def close(self) -> None:
        """Free the GL context (idempotent)."""
        renderer = getattr(self, "_renderer", None)
        self._renderer = None
        if renderer is not None:
            try:
                renderer.close()
            except Exception:  # noqa: BLE001 - the display may already be gone at interpreter exit
                pass
        _LIVE_RENDERERS.discard(self)

    def __del__(self) -> None:
        self.close()


class OffscreenRenderWrapper(gym.Wrapper):
    """Gives any MuJoCo-based env (Meta-World's included) a fast ``render()`` of upright RGB frames.

    The wrapped env's own renderer is never used; this wrapper sets ``render_mode = "rgb_array"``.

    Args:
        env: a Gymnasium env whose ``unwrapped`` has ``model`` and ``data`` (any ``MujocoEnv``).
        camera: camera name, one of :data:`CAMERAS` for Meta-World.
        image_size: square frame side in pixels.
        render_quality: ``"fast"`` or ``"full"``.

    Example:
        >>> import gymnasium as gym, furl_wrappers
        >>> base = gym.make("Meta-World/MT1", env_name="reach-v3")
        >>> env = furl_wrappers.OffscreenRenderWrapper(base, image_size=32)
        >>> _ = env.reset(seed=0)
        >>> env.render().dtype
        dtype('uint8')
    """

    def __init__(
        self,
        env: gym.Env,
        camera: str = "corner2",
        image_size: int = 224,
        render_quality: RenderQuality = "fast",
    ) -> None:
        super().__init__(env)
        unwrapped = env.unwrapped
        if not (hasattr(unwrapped, "model") and hasattr(unwrapped, "data")):
            raise TypeError(f"OffscreenRenderWrapper needs a MuJoCo env (with .model and .data), got {unwrapped!r}")
        check_image_size(image_size)
        check_render_quality(render_quality)
        self._frame_renderer = FrameRenderer(unwrapped.model, unwrapped.data, camera, image_size, render_quality)
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}

    @property
    def render_mode(self) -> str:  # type: ignore[override]
        """Always ``"rgb_array"``."""
        return "rgb_array"

    @property
    def frame_renderer(self) -> FrameRenderer:
        """The :class:`FrameRenderer` behind ``render()``."""
        return self._frame_renderer

    def render(self) -> np.ndarray:
        """The current frame, uint8 ``(image_size, image_size, 3)``, upright."""
        return self._frame_renderer.render()

    def close(self) -> None:
        self._frame_renderer.close()
        super().close()
