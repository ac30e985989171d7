"""The JAX state of sbx models as tensors: every leaf saved, restored leaf by leaf, nothing unpickled, bad files
refused in one line."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("sbx", reason="the jax extra (sbx) is not installed")

import gymnasium as gym  # noqa: E402

from furl_wrappers.jax_backbones import SbxCrossQ, SbxSAC, SbxTQC  # noqa: E402
from furl_wrappers.jax_state import JAX_PARAMS, JaxStateError, restore_state, state_tensors  # noqa: E402
from furl_wrappers.serialization import CorruptFileError, UnsafeFileError, load_model, save_model  # noqa: E402


def _model(cls=SbxSAC, seed: int = 0, **kwargs):
    return cls("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=200, learning_starts=20, batch_size=8, seed=seed,
               policy_kwargs={"net_arch": [16, 16]}, **kwargs)


@pytest.fixture(scope="module")
def trained():
    model = _model()
    model.learn(40)  # 20 updates: parameters, Adam moments, step counts and keys all moved
    return model


def _zip(model) -> bytes:
    handle = io.BytesIO()
    save_model(model, handle)
    return handle.getvalue()


def _rezip(raw: bytes, **entries) -> bytes:
    """``raw`` with entries replaced (bytes), dropped (None) or added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            if name not in entries:
                dst.writestr(name, src.read(name))
        for name, data in entries.items():
            if data is not None:
                dst.writestr(name, data)
    return out.getvalue()


def test_every_leaf_is_a_named_tensor(trained) -> None:
    tensors = state_tensors(trained)
    # SAC: the model's key and entropy-coefficient state; the policy's actor and critic states and its two keys
    owners = {name.split("[")[0].split(".")[0] + "." + name.split("[")[0].split(".")[1] for name in tensors}
    assert owners == {"model.key", "model.ent_coef_state", "policy.actor_state", "policy.qf_state", "policy.key",
                      "policy.noise_key"}
    assert tensors["model.key"].dtype == torch.uint32 and tensors["model.key"].shape == (2,)
    assert tensors["policy.qf_state.step"].item() == 20  # the critic's Adam step count after 20 updates
    kernel = tensors["policy.qf_state.params['params']['VmapContinuousCritic_0']['Dense_0']['kernel']"]
    assert kernel.shape == (2, 3 + 1, 16)  # two critics (vmapped), obs 3 + action 1 → 16
    target = tensors["policy.qf_state.target_params['params']['VmapContinuousCritic_0']['Dense_0']['kernel']"]
    assert not torch.equal(kernel, target)  # the target network travels on its own
    log_ent = tensors["model.ent_coef_state.params['log_ent_coef']"].item()
    assert log_ent == pytest.approx(float(np.log(trained.ent_coef_state.apply_fn(
        {"params": trained.ent_coef_state.params}))), abs=1e-6)


@pytest.mark.parametrize("cls", [SbxSAC, SbxCrossQ, SbxTQC])
def test_restore_into_another_seed_gives_the_same_model(cls) -> None:
    source, target = _model(cls, seed=0), _model(cls, seed=1)
    source.learn(30)
    before = state_tensors(target)
    restore_state(target, state_tensors(source))
    got, want = state_tensors(target), state_tensors(source)
    assert set(got) == set(want) and any(not torch.equal(before[k], want[k]) for k in want)
    for name in want:
        assert torch.equal(got[name], want[name]), name
    obs = np.array([[0.5, -0.5, 0.1], [1.0, 0.0, -2.0]], dtype=np.float32)
    # the random keys were restored too: the same stochastic actions, in the same order
    for _ in range(3):
        np.testing.assert_array_equal(source.predict(obs)[0], target.predict(obs)[0])


def test_zip_holds_tensors_and_no_pickled_jax_state(trained, monkeypatch: pytest.MonkeyPatch) -> None:
    import cloudpickle

    raw = _zip(trained)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        assert f"{JAX_PARAMS}.pth" in archive.namelist()
        data = json.loads(archive.read("data"))
    for name in ("policy", "actor", "qf", "ent_coef", "ent_coef_state", "key"):
        assert name not in data  # rebuilt on load, never stored (and refused when planted)
    monkeypatch.setattr(cloudpickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    loaded = load_model(SbxSAC, raw, device="cpu")
    for name, value in state_tensors(trained).items():
        assert torch.equal(state_tensors(loaded)[name], value), name
    obs = np.zeros((1, 3), dtype=np.float32)
    np.testing.assert_array_equal(trained.predict(obs)[0], loaded.predict(obs)[0])  # same noise key


def test_set_parameters_takes_a_zip_path(trained, tmp_path) -> None:
    save_model(trained, tmp_path / "m")
    other = _model(seed=5)
    other.set_parameters(str(tmp_path / "m.zip"))
    assert all(torch.equal(state_tensors(other)[k], v) for k, v in state_tensors(trained).items())


def _tensor_file(obj) -> bytes:
    handle = io.BytesIO()
    torch.save(obj, handle)
    return handle.getvalue()


def test_bad_jax_parameters_are_refused_in_one_line(trained) -> None:
    raw = _zip(trained)
    good = state_tensors(trained)
    name = "policy.actor_state.params['params']['Dense_0']['kernel']"
    cases = {
        "missing": {k: v for k, v in good.items() if k != name},
        "unexpected": {**good, "policy.extra": torch.zeros(1)},
        "float64[3, 16]": {**good, name: good[name].double()},
        "float32[4, 16]": {**good, name: torch.zeros(4, 16)},
    }
    for why, tensors in cases.items():
        with pytest.raises(JaxStateError, match=why.replace("[", r"\[")) as info:
            load_model(SbxSAC, _rezip(raw, **{f"{JAX_PARAMS}.pth": _tensor_file(tensors)}), device="cpu")
        assert "\n" not in str(info.value) and isinstance(info.value, (CorruptFileError, RuntimeError))
    with pytest.raises(JaxStateError, match="no 'jax' parameters"):
        load_model(SbxSAC, _rezip(raw, **{f"{JAX_PARAMS}.pth": None}), device="cpu")
    with pytest.raises(JaxStateError, match="not a dense CPU tensor"):
        restore_state(_model(), {**good, name: [1.0]})


@pytest.mark.parametrize("case, match", [
    ("bfloat16", r"is bfloat16\[16, 3\]"), ("sparse", "not a dense CPU tensor"), ("meta", "not a dense CPU tensor"),
    ("huge", r"is float32\[1000000, 1000000\], the model's float32\[3, 16\]"), ("nan", "holds NaN or inf"),
    ("mixed keys", r"unexpected (5|'zz')")])
def test_odd_tensors_are_refused_before_conversion(trained, case: str, match: str) -> None:
    """Each value is checked as stored (layout, device, dtype, shape, finite) before anything converts it: a
    bfloat16, sparse or shape-only tensor, a declared 1e12-element one, NaN weights, keys of mixed types."""
    good = state_tensors(trained)
    name = "policy.actor_state.params['params']['Dense_0']['kernel']"
    value = {"bfloat16": good[name].T.bfloat16(), "sparse": good[name].to_sparse(),
             "meta": torch.empty(good[name].shape, device="meta"),
             "nan": torch.full_like(good[name], float("nan"))}.get(case)
    if case == "huge":  # a tensor whose declared shape is checked, never materialised
        value = torch.zeros(1).expand(10**6, 10**6)
    tensors = {5: good[name], "zz": good[name], **good} if case == "mixed keys" else {**good, name: value}
    with pytest.raises(JaxStateError, match=match) as info:
        restore_state(_model(), tensors)
    assert "\n" not in str(info.value)


def test_extra_parameter_files_and_variables_are_refused(trained) -> None:
    raw = _zip(trained)
    with pytest.raises(CorruptFileError, match=r"entry 'policy.pth' is not a parameter file of an sbx model"):
        load_model(SbxSAC, _rezip(raw, **{"policy.pth": _tensor_file({"w": torch.zeros(1)})}), device="cpu")
    planted = _rezip(raw, **{"pytorch_variables.pth": _tensor_file({"log_ent_coef": torch.zeros(1)})})
    with pytest.raises(CorruptFileError, match="pytorch_variables.pth names variables, which an sbx model has none"):
        load_model(SbxSAC, planted, device="cpu")  # a name torch SAC saves: still none for sbx
    planted = _rezip(raw, **{"pytorch_variables.pth": _tensor_file({"policy": torch.zeros(1)})})
    with pytest.raises(CorruptFileError, match="pytorch_variables.pth names 'policy', not a variable SB3 saves"):
        load_model(SbxSAC, planted, device="cpu")


@pytest.mark.parametrize("key, value, match", [
    ("ent_coef_init", "auto_x", "ent_coef_init is 'auto_x', not 'auto', 'auto_<positive number>'"),
    ("ent_coef_init", "auto_-1", "ent_coef_init is 'auto_-1'"), ("ent_coef_init", 1, "ent_coef_init is '1'"),
    ("ent_coef_init", float("nan"), "ent_coef_init is 'nan'"), ("ent_coef_init", -5.0, "ent_coef_init is '-5.0'"),
    ("target_entropy", "abc", "target_entropy is 'abc', not 'auto' or a finite number"),
    ("learning_rate", "x", "learning_rate is 'x', not a non-negative number or a schedule"),
    ("learning_rate", -1.0, "learning_rate is '-1.0'"),
    ("initial_qf_learning_rate", -1e-3, "initial_qf_learning_rate is '-0.001'"),
    ("policy_delay", 0, "policy_delay is '0', not a positive integer"),
    ("param_resets", "abc", "param_resets is 'abc', not None or a list of step counts"),
    ("policy_kwargs", {"net_arch": "abc"}, r"its settings do not build a SbxSAC \(")])
def test_settings_sbx_would_act_on_are_checked(trained, key: str, value, match: str) -> None:
    raw = _zip(trained)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        data = json.loads(archive.read("data"))
    edited = _rezip(raw, data=json.dumps({**data, key: value}).encode())
    with pytest.raises(CorruptFileError, match=match) as info:
        load_model(SbxSAC, edited, device="cpu")
    assert "\n" not in str(info.value)


def test_pickles_and_planted_keys_are_refused(trained) -> None:
    raw = _zip(trained)

    class Planted:
        def __reduce__(self):
            return (print, ("ran",))

    with pytest.raises(UnsafeFileError, match="pickled objects besides tensors"):
        load_model(SbxSAC, _rezip(raw, **{f"{JAX_PARAMS}.pth": _tensor_file({"x": Planted()})}), device="cpu")
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        data = json.loads(archive.read("data"))
    for key in ("ent_coef_state", "policy", "key"):
        planted = _rezip(raw, data=json.dumps({**data, key: 1}).encode())
        with pytest.raises(UnsafeFileError, match=f"holds '{key}'"):
            load_model(SbxSAC, planted, device="cpu")
