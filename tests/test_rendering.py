"""Offscreen frames: upright, non-empty with several envs per process, fast ≈ full."""

from __future__ import annotations

import numpy as np
import pytest

from furl_wrappers import CAMERAS, FrameRenderer, make_metaworld_env
from furl_wrappers.rendering import configure_headless_gl


def _non_empty(frame: np.ndarray) -> bool:
    return frame.dtype == np.uint8 and frame.max() > 50 and frame.std() > 10


def test_frame_shape_dtype_and_content() -> None:
    env = make_metaworld_env("drawer-open", image_size=224)
    env.reset()
    frame = env.render()
    assert frame.shape == (224, 224, 3) and frame.dtype == np.uint8
    assert frame.flags.c_contiguous
    assert _non_empty(frame)
    assert env.render_mode == "rgb_array"


def test_frames_are_upright() -> None:
    # From corner2, the plain grey background fills the top rows, and the floor, table and the robot's dark
    # pedestal fill the bottom ones. Upside down (MuJoCo's raw output) it is the other way round.
    for task in ("drawer-open", "reach"):
        env = make_metaworld_env(task, image_size=128, camera="corner2")
        env.reset()
        gray = env.render().astype(np.float32).mean(axis=-1)
        top, bottom = gray[:24], gray[-24:]
        assert top.std() < 3.0  # featureless background
        assert bottom.std() > 20.0  # floor tiles, table legs, pedestal
        blocks = gray.reshape(8, 16, 8, 16).mean(axis=(1, 3))
        row, _ = np.unravel_index(np.argmin(blocks), blocks.shape)
        assert row >= 5  # the darkest block (the pedestal) is near the bottom
        env.close()


def test_four_envs_in_one_process_all_render() -> None:
    envs = [make_metaworld_env(t, image_size=64) for t in ("reach", "push", "drawer-open", "window-open")]
    for env in envs:
        env.reset()
    for _ in range(3):  # interleaved, as a DummyVecEnv steps and renders them
        frames = [env.render() for env in envs]
        assert all(_non_empty(f) for f in frames)
        for env in envs:
            env.step(env.action_space.sample())
    # the frames differ (each env draws its own scene, not another's context)
    assert not np.array_equal(frames[0], frames[2])
    # a full-quality renderer created after the others does not break them
    full = make_metaworld_env("reach", image_size=64, render_quality="full")
    full.reset()
    assert _non_empty(full.render())
    assert all(_non_empty(env.render()) for env in envs)
    for env in envs + [full]:
        env.close()


def test_fast_and_full_frames_close_on_same_state() -> None:
    env = make_metaworld_env("drawer-open", image_size=128, render_quality="fast")
    env.reset()
    for _ in range(10):
        env.step(env.action_space.sample())
    base = env.unwrapped
    full = FrameRenderer(base.model, base.data, "corner2", 128, "full")
    fast_frame = env.render().astype(np.int16)
    full_frame = full.render().astype(np.int16)
    diff = np.abs(fast_frame - full_frame)
    assert diff.mean() < 15.0  # shadows and reflections only: same scene, same pose
    assert np.median(diff) <= 6
    # the model the env simulates is left as it was
    assert base.model.vis.quality.shadowsize == 4096 and base.model.vis.quality.offsamples == 4
    full.close()


def test_every_camera_renders() -> None:
    env = make_metaworld_env("reach", image_size=48)
    env.reset()
    base = env.unwrapped
    for cam in CAMERAS:
        r = FrameRenderer(base.model, base.data, cam, 48)
        assert r.render().shape == (48, 48, 3)
        r.close()


def test_renderer_bad_inputs_and_close() -> None:
    env = make_metaworld_env("reach", image_size=32)
    base = env.unwrapped
    with pytest.raises(ValueError, match="'nope'"):
        FrameRenderer(base.model, base.data, "nope", 32)
    with pytest.raises(ValueError, match="render_quality"):
        FrameRenderer(base.model, base.data, "corner2", 32, "medium")  # type: ignore[arg-type]
    r = FrameRenderer(base.model, base.data, "corner2", 32)
    r.close()
    r.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        r.render()


def test_headless_choice_respects_user_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert configure_headless_gl() == "osmesa"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert configure_headless_gl() == "egl"
    monkeypatch.delenv("MUJOCO_GL")
    monkeypatch.setenv("DISPLAY", ":0")
    assert configure_headless_gl() is None


def test_missing_gl_gives_install_hint(tmp_path) -> None:
    # A fresh interpreter asking for a GL backend whose library is absent must get the package names.
    import subprocess
    import sys

    code = (
        "import furl_wrappers\n"
        "try:\n"
        "    furl_wrappers.make_metaworld_env('reach', image_size=32)\n"
        "except furl_wrappers.RenderingUnavailableError as e:\n"
        "    print('ERR', e)\n"
    )
    env = {"MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    import ctypes.util

    if ctypes.util.find_library("OSMesa"):
        pytest.skip("libOSMesa is installed here, so the osmesa backend works")
    assert "ERR" in out.stdout, out.stdout + out.stderr
    assert "libegl1 libgl1-mesa-dri libegl-mesa0" in out.stdout


def test_any_import_order_renders_headless() -> None:
    """metaworld and mujoco imported before furl_wrappers, no MUJOCO_GL, no display: MuJoCo picked GLFW, the
    renderer switches its contexts to EGL and draws a real frame."""
    import os
    import subprocess
    import sys

    code = ("import metaworld, mujoco, furl_wrappers; env = furl_wrappers.make_metaworld_env('reach', image_size=48); "
            "env.reset(); f = env.render(); print(round(float(f.mean()), 2), round(float(f.std()), 2))")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY",
                                                            "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    mean, std = map(float, out.stdout.split()[-2:])
    assert mean > 10 and std > 5  # not a black (or blank) frame
