"""Pickle-free model zips and replay buffers: exact round trips, hostile pickles never run, cut files named."""

from __future__ import annotations

import base64
import io
import json
import sys
import zipfile
from collections import deque
from pathlib import Path
from typing import Callable

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import TQC
from stable_baselines3 import SAC
from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import ConstantSchedule, FloatSchedule, LinearSchedule

from furl_wrappers import json_codec, serialization
from furl_wrappers.relay import RelayPolicy
from furl_wrappers.reward_model import RewardModel
from furl_wrappers.serialization import (
    SAFE_ENTRY,
    CorruptFileError,
    UnsafeFileError,
    load_model,
    safe_custom_objects,
    save_model,
)
from furl_wrappers.vlm_buffer import VLMReplayBuffer
from furl_wrappers.vlm_reward import VLMReward

FRESH_KEYS = {"policy_class", "observation_space", "action_space", "replay_buffer_class", "train_freq", "lr_schedule"}
RUN_KEYS = {"_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer", "ep_success_buffer"}


# ------------------------------------------------------------------------------------------------ helpers
class _Marker:
    """Unpickling it creates ``path`` (what a hostile zip would do, harmlessly)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


def _payload(marker: Path) -> dict:
    return {":type:": "<class 'numpy.ndarray'>", ":serialized:": base64.b64encode(cloudpickle.dumps(_Marker(marker)))
            .decode()}


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], None]) -> Path:
    with zipfile.ZipFile(src) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    edit(entries)
    with zipfile.ZipFile(dst, "w") as archive:
        for name, blob in entries.items():
            archive.writestr(name, blob)
    return dst


def _edit_json(entries: dict[str, bytes], name: str, fn: Callable[[dict], None]) -> None:
    data = json.loads(entries[name])
    fn(data)
    entries[name] = json.dumps(data).encode()


def _in_task_agent(fn: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    """An edit for :func:`_rewrite` applying ``fn`` to the ``data`` of the relay's nested ``task_agent.zip``."""

    def poison(entries: dict[str, bytes]) -> None:
        with zipfile.ZipFile(io.BytesIO(entries["task_agent.zip"])) as archive:
            inner = {name: archive.read(name) for name in archive.namelist()}
        _edit_json(inner, "data", fn)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for name, blob in inner.items():
                archive.writestr(name, blob)
        entries["task_agent.zip"] = out.getvalue()

    return poison


def _sac(learn: int = 0, cls: type = SAC) -> SAC:
    model = cls("MlpPolicy", gym.make("Pendulum-v1"), buffer_size=100, learning_starts=10, batch_size=8, seed=0,
                device="cpu", policy_kwargs={"net_arch": [8, 8], "activation_fn": torch.nn.Tanh,
                                             "optimizer_class": torch.optim.AdamW})
    return model.learn(learn) if learn else model


def _relay(venv, learn: int = 15) -> RelayPolicy:
    model = RelayPolicy("MlpPolicy", venv, learning_starts=5, buffer_size=200, batch_size=8, seed=0, device="cpu",
                        alignment_kwargs={"batch_size": 8})
    return model.learn(learn)


def _assert_same_policy(a, b, obs: np.ndarray) -> None:
    for (name, x), (_, y) in zip(a.policy.state_dict().items(), b.policy.state_dict().items()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)
    np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("cloudpickle.loads was called")

    monkeypatch.setattr(cloudpickle, "loads", refuse)


# ------------------------------------------------------------------------------------------------ codec
def test_codec_round_trips_every_type_exactly() -> None:
    box = spaces.Box(0, 255, (4, 4, 3), np.uint8)
    box.sample()  # the space's generator exists: its state round-trips too
    values = {
        "box": box, "inf_box": spaces.Box(-np.inf, np.inf, (3,), np.float64), "discrete": spaces.Discrete(5, start=2),
        "mb": spaces.MultiBinary([2, 3]), "md": spaces.MultiDiscrete([3, 4], start=[1, 0]),
        "dict": spaces.Dict({"b": spaces.Box(-1, 1, (2,)), "a": spaces.Discrete(3)}),
        "tuple_space": spaces.Tuple([spaces.Discrete(2), spaces.Box(-1, 1, (1,))]),
        "deque": deque([{"r": -1.5, "l": 10, "t": 0.25, "is_success": np.bool_(True)}], maxlen=100),
        "bools": deque([False, np.bool_(True)], maxlen=5), "tf": TrainFreq(4, TrainFrequencyUnit.EPISODE),
        "lin": LinearSchedule(1.0, 0.1, 0.5), "fs": FloatSchedule(ConstantSchedule(3e-4)), "dev": torch.device("cpu"),
        "scalar": np.float32(-1.5), "arr": np.arange(6, dtype=">i4").reshape(2, 3), "tup": (1, "a", None, [2.5]),
        "policy_kwargs": {"activation_fn": torch.nn.ReLU, "optimizer_class": torch.optim.Adam, "net_arch": [64, 64]},
    }
    holder = type("Holder", (), {})()
    holder.__dict__.update(values)
    entry = json.loads(json.dumps(serialization.safe_entry(holder, list(values))))
    assert entry["skipped"] == {}
    got = {k: json_codec.decode(v) for k, v in entry["data"].items()}
    for key in ("box", "inf_box", "discrete", "mb", "md", "dict", "tuple_space", "tf", "dev", "tup", "policy_kwargs"):
        assert got[key] == values[key], key
    assert list(got["dict"].spaces) == ["a", "b"] and type(got["scalar"]) is np.float32
    assert got["box"].np_random.bit_generator.state == box.np_random.bit_generator.state
    assert got["deque"] == values["deque"] and got["deque"].maxlen == 100 and got["bools"] == values["bools"]
    assert type(got["deque"][0]["is_success"]) is np.bool_
    assert got["arr"].dtype == np.dtype(">i4") and np.array_equal(got["arr"], values["arr"])
    assert repr(got["lin"]) == repr(values["lin"]) and repr(got["fs"]) == repr(values["fs"])


def test_codec_skips_what_it_cannot_describe() -> None:
    holder = type("Holder", (), {})()
    holder.fn, holder.obj, holder.rw = (lambda x: x), object(), VLMReward(None, RewardModel(torch.ones(4)), text="t")
    entry = serialization.safe_entry(holder, ["fn", "obj", "rw"])
    assert sorted(entry["skipped"]) == ["fn", "obj"] and entry["data"] == {"rw": None}  # the reward is never saved


# ------------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("cls", [SAC, TQC])
def test_sac_round_trip_without_unpickling(tmp_path: Path, cls: type, no_unpickling: None) -> None:
    model = _sac(learn=20, cls=cls)
    path = save_model(model, tmp_path / "model")
    assert path == tmp_path / "model.zip"
    custom = safe_custom_objects(path)
    assert FRESH_KEYS | RUN_KEYS <= set(custom)
    loaded = load_model(cls, tmp_path / "model", device="cpu")  # the .zip suffix is found as SB3 does
    obs = np.stack([model.observation_space.sample() for _ in range(5)])
    _assert_same_policy(model, loaded, obs)
    assert loaded.policy_kwargs == model.policy_kwargs and loaded.train_freq == model.train_freq
    assert (loaded.observation_space, loaded.action_space) == (model.observation_space, model.action_space)
    np.testing.assert_array_equal(loaded._last_obs, model._last_obs)
    assert loaded.target_entropy == model.target_entropy
    if "target_entropy" in custom:  # TQC keeps a numpy scalar: rebuilt as one
        assert type(custom["target_entropy"]) is type(model.target_entropy) is np.float32
    handle = io.BytesIO()
    assert save_model(loaded, handle) is None
    _assert_same_policy(model, load_model(cls, io.BytesIO(handle.getvalue()), device="cpu"), obs)


def test_relay_round_trip_without_unpickling(tmp_path: Path, no_unpickling: None, vlm_venv) -> None:
    venv = vlm_venv()
    model = _relay(venv)
    save_model(model, tmp_path / "relay.zip")
    with zipfile.ZipFile(tmp_path / "relay.zip") as archive:
        assert SAFE_ENTRY in archive.namelist()
        nested = archive.read("task_agent.zip")
    assert FRESH_KEYS | RUN_KEYS <= set(safe_custom_objects(tmp_path / "relay.zip"))
    assert FRESH_KEYS <= set(safe_custom_objects(nested))
    loaded = load_model(RelayPolicy, tmp_path / "relay.zip", env=vlm_venv(), device="cpu")
    obs = venv.reset()
    _assert_same_policy(model, loaded, obs)
    _assert_same_policy(model.task_agent, loaded.task_agent, obs)
    assert loaded.replay_buffer_class is VLMReplayBuffer and loaded.num_timesteps == model.num_timesteps
    RelayPolicy.load(tmp_path / "relay", env=vlm_venv())  # its own load is the safe one too


# ------------------------------------------------------------------------------------------------ hostile zips
def test_unknown_pickled_key_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    save_model(_sac(), tmp_path / "m.zip")
    _rewrite(tmp_path / "m.zip", tmp_path / "evil.zip",
             lambda e: _edit_json(e, "data", lambda d: d.update(evil=_payload(marker))))
    with pytest.raises(UnsafeFileError, match=r"evil\.zip.*'evil'.*trusted=True"):
        load_model(SAC, tmp_path / "evil.zip")
    assert not marker.exists()
    load_model(SAC, tmp_path / "evil.zip", trusted=True)  # explicit opt-in: SB3 unpickles, the payload runs
    assert marker.exists()


def test_replaced_existing_key(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    def replace(entries: dict[str, bytes]) -> None:
        _edit_json(entries, "data", lambda d: d.update(_last_obs=_payload(marker)))

    save_model(_sac(), tmp_path / "fresh.zip")  # no _last_obs description (it was None when saved)
    _rewrite(tmp_path / "fresh.zip", tmp_path / "evil.zip", replace)
    with pytest.raises(UnsafeFileError, match="'_last_obs'"):
        load_model(SAC, tmp_path / "evil.zip")
    trained = _sac(learn=12)
    save_model(trained, tmp_path / "trained.zip")  # described: the description is used, the pickle ignored
    _rewrite(tmp_path / "trained.zip", tmp_path / "evil2.zip", replace)
    np.testing.assert_array_equal(load_model(SAC, tmp_path / "evil2.zip")._last_obs, trained._last_obs)
    assert not marker.exists()


def test_relay_nested_zip_is_checked_too(tmp_path: Path, vlm_venv) -> None:
    marker = tmp_path / "pwned"
    _relay(vlm_venv(), learn=6).save(tmp_path / "relay.zip")

    _rewrite(tmp_path / "relay.zip", tmp_path / "evil.zip", _in_task_agent(lambda d: d.update(evil=_payload(marker))))
    with pytest.raises(UnsafeFileError, match=r"evil\.zip:task_agent\.zip.*'evil'"):
        RelayPolicy.load(tmp_path / "evil.zip", env=vlm_venv())
    assert not marker.exists()


@pytest.mark.parametrize("path", ["os:system", "builtins:eval", "furl_wrappers.__main__:main", "subprocess:Popen",
                                  "stable_baselines3.common.buffers:ReplayBuffer", "torch.nn:Tanh",
                                  "stable_baselines3.sac.policies:SACPolicy.__init__", "furl_wrappers.cli:main"])
def test_disallowed_classes_are_refused(tmp_path: Path, path: str) -> None:
    save_model(_sac(), tmp_path / "m.zip")

    def swap(safe: dict) -> None:
        safe["data"]["policy_class"] = {"__type__": "class", "path": path}

    _rewrite(tmp_path / "m.zip", tmp_path / "evil.zip", lambda e: _edit_json(e, SAFE_ENTRY, swap))
    with pytest.raises(UnsafeFileError, match=r"evil\.zip.*'policy_class'.*refused"):
        load_model(SAC, tmp_path / "evil.zip")
    assert "furl_wrappers.__main__" not in sys.modules


@pytest.mark.parametrize("key, node", [
    ("observation_space", {"__type__": "ndarray", "dtype": "|O", "shape": [1], "data": ""}),
    ("observation_space", {"__type__": "space", "space": "Text", "max_length": 3}),
    ("action_space", {"__type__": "space", "space": "Discrete", "n": 3, "start": 0, "dtype": {"__type__": "dtype",
                      "value": "|O"}}),
    ("action_space", {"__type__": "class", "path": "gymnasium.spaces:Box"}),
    ("lr_schedule", {"__type__": "schedule", "class": "FloatSchedule", "value_schedule": {
        "__type__": "class", "path": "torch.nn:Tanh"}}),
    ("lr_schedule", {"__type__": "schedule", "class": "ConstantSchedule", "val": "1e-3"}),
    ("train_freq", {"__type__": "pickle", "data": "gASVAAAAAAAAAAA="}),
    ("train_freq", ["not", "a", {"dict": "without a type"}]),
])
def test_malformed_descriptions_are_refused(tmp_path: Path, key: str, node) -> None:
    save_model(_sac(), tmp_path / "m.zip")
    _rewrite(tmp_path / "m.zip", tmp_path / "evil.zip",
             lambda e: _edit_json(e, SAFE_ENTRY, lambda safe: safe["data"].update({key: node})))
    with pytest.raises(UnsafeFileError, match=rf"evil\.zip.*{key!r}.*refused"):
        load_model(SAC, tmp_path / "evil.zip")


def test_old_zip_needs_trusted(tmp_path: Path) -> None:
    _sac().save(tmp_path / "plain.zip")  # SB3's own save: no safe entry
    with pytest.raises(UnsafeFileError, match=r"plain\.zip.*'policy_class'.*trusted=True"):
        load_model(SAC, tmp_path / "plain.zip")
    assert isinstance(load_model(SAC, tmp_path / "plain.zip", trusted=True), SAC)


def test_truncated_or_damaged_zip(tmp_path: Path, vlm_venv) -> None:
    save_model(_sac(), tmp_path / "m.zip")
    blob = (tmp_path / "m.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(blob[: len(blob) // 2])
    for trusted in (False, True):
        with pytest.raises(CorruptFileError, match=r"cut\.zip' is not a complete model zip \(truncated or corrupt\)"):
            load_model(SAC, tmp_path / "cut.zip", trusted=trusted)
    start = blob.index(b"policy_class")  # flip a byte inside the data entry: its CRC no longer matches
    (tmp_path / "flip.zip").write_bytes(blob[:start] + b"X" + blob[start + 1:])
    with pytest.raises(CorruptFileError, match=r"flip\.zip"):
        load_model(SAC, tmp_path / "flip.zip")
    _relay(vlm_venv(), learn=6).save(tmp_path / "relay.zip")
    blob = (tmp_path / "relay.zip").read_bytes()
    (tmp_path / "relay_cut.zip").write_bytes(blob[: len(blob) - 100])
    with pytest.raises(CorruptFileError, match=r"relay_cut\.zip"):
        RelayPolicy.load(tmp_path / "relay_cut.zip", env=vlm_venv())



# ------------------------------------------------------------------------------------------------ planted plain keys
def _plant_env_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module that gym.make("planted_env_mod:X-v0") would import; importing it creates the marker."""
    marker = tmp_path / "imported"
    (tmp_path / "planted_env_mod.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return marker


def test_a_planted_env_key_never_imports_a_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = _plant_env_module(tmp_path, monkeypatch)
    save_model(_sac(), tmp_path / "m.zip")
    _rewrite(tmp_path / "m.zip", tmp_path / "evil.zip",
             lambda e: _edit_json(e, "data", lambda d: d.update(env="planted_env_mod:X-v0")))
    with pytest.raises(UnsafeFileError, match=r"evil\.zip.*'env', which SB3's save never writes"):
        load_model(SAC, tmp_path / "evil.zip")  # env=None: SB3 would gym.make the planted id
    assert not marker.exists() and "planted_env_mod" not in sys.modules


@pytest.mark.parametrize("key, value", [("device", "cuda:7"), ("replay_buffer", {"a": 1}), ("policy", "x"),
                                        ("_vec_normalize_env", None), ("_logger", "x"), ("actor", None),
                                        ("observation_space", [0, 1]), ("_last_obs", [[1.0, 2.0, 3.0]]),
                                        ("policy_class", "MlpPolicy")])
def test_planted_plain_keys_are_refused(tmp_path: Path, key: str, value) -> None:
    save_model(_sac(learn=12), tmp_path / "m.zip")
    _rewrite(tmp_path / "m.zip", tmp_path / "evil.zip",
             lambda e: _edit_json(e, "data", lambda d: d.update({key: value})))
    with pytest.raises(UnsafeFileError, match=rf"evil\.zip.*{key!r}"):
        load_model(SAC, tmp_path / "evil.zip")


def test_a_planted_env_key_in_the_relays_inner_zip_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              , vlm_venv) -> None:
    _relay(vlm_venv(), learn=6).save(tmp_path / "relay.zip")
    marker = _plant_env_module(tmp_path, monkeypatch)
    plant = _in_task_agent(lambda d: d.update(env="planted_env_mod:X-v0"))
    _rewrite(tmp_path / "relay.zip", tmp_path / "evil.zip", plant)
    with pytest.raises(UnsafeFileError, match=r"evil\.zip:task_agent\.zip.*'env'"):
        RelayPolicy.load(tmp_path / "evil.zip", env=vlm_venv())
    assert not marker.exists()


# ------------------------------------------------------------------------------------------------ bombs
@pytest.mark.parametrize("entry", ["data", SAFE_ENTRY])
def test_deeply_nested_json_is_one_line(tmp_path: Path, entry: str) -> None:
    save_model(_sac(), tmp_path / "m.zip")

    def nest(entries: dict[str, bytes]) -> None:
        entries[entry] = entries[entry][:-1] + b', "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    _rewrite(tmp_path / "m.zip", tmp_path / "deep.zip", nest)
    with pytest.raises(CorruptFileError, match=rf"deep\.zip:{entry}' is not valid: JSON nested deeper than 64"):
        load_model(SAC, tmp_path / "deep.zip")


def test_huge_spaces_are_refused_before_allocating(tmp_path: Path) -> None:
    save_model(_sac(), tmp_path / "m.zip")

    def huge(safe: dict) -> None:
        box = safe["data"]["observation_space"]
        box["shape"] = {"__type__": "tuple", "items": [8000, 8000]}
        box["low"] = box["high"] = 0.0  # scalars: Box would broadcast them to 8000 x 8000
    _rewrite(tmp_path / "m.zip", tmp_path / "huge.zip", lambda e: _edit_json(e, SAFE_ENTRY, huge))
    with pytest.raises(UnsafeFileError, match=r"'observation_space'.*64000000 elements, more than the 16777216"):
        load_model(SAC, tmp_path / "huge.zip")


def test_an_abstract_class_is_refused(tmp_path: Path) -> None:
    save_model(_sac(), tmp_path / "m.zip")
    _rewrite(tmp_path / "m.zip", tmp_path / "abstract.zip", lambda e: _edit_json(
        e, SAFE_ENTRY, lambda s: s["data"].update(policy_class={
            "__type__": "class", "path": "stable_baselines3.common.policies:BasePolicy"})))
    with pytest.raises(UnsafeFileError, match=r"'policy_class'.*BasePolicy' is abstract"):
        load_model(SAC, tmp_path / "abstract.zip")


def test_a_pickle_in_policy_pth_is_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    save_model(_sac(), tmp_path / "m.zip")

    def plant(entries: dict[str, bytes]) -> None:
        blob = io.BytesIO()
        torch.save({"x": _Marker(marker)}, blob)
        entries["policy.pth"] = blob.getvalue()

    _rewrite(tmp_path / "m.zip", tmp_path / "evil.zip", plant)
    with pytest.raises(UnsafeFileError, match=r"evil\.zip.*'policy.pth' holds pickled objects") as info:
        load_model(SAC, tmp_path / "evil.zip")
    assert "\n" not in str(info.value) and not marker.exists()


def _torch_entry(entries: dict[str, bytes], name: str, edit: Callable[[dict], None]) -> None:
    tensors = torch.load(io.BytesIO(entries[name]), weights_only=True)
    edit(tensors)
    blob = io.BytesIO()
    torch.save(tensors, blob)
    entries[name] = blob.getvalue()


@pytest.mark.parametrize(("entry", "key", "where"), [
    ("policy.pth", "actor.mu.weight", "actor.mu.weight"),
    ("critic.optimizer.pth", "state", "state.0.exp_avg"),
    ("pytorch_variables.pth", "log_ent_coef", "log_ent_coef"),
])
def test_nan_or_inf_weights_are_refused_in_one_line(tmp_path: Path, entry: str, key: str, where: str) -> None:
    """A diverged or edited model never reaches training: NaN or inf in weights, optimiser state or SB3's own
    variables is refused naming the entry and the tensor."""
    save_model(_sac(learn=20), tmp_path / "m.zip")

    def poison(tensors: dict) -> None:
        if key == "state":
            tensors["state"][0]["exp_avg"] = torch.full_like(tensors["state"][0]["exp_avg"], float("inf"))
        else:
            tensors[key] = torch.full_like(tensors[key], float("nan"))

    _rewrite(tmp_path / "m.zip", tmp_path / "nan.zip", lambda e: _torch_entry(e, entry, poison))
    with pytest.raises(CorruptFileError, match=rf"nan\.zip.*'{entry}' holds NaN or inf in '{where}': a diverged"
                       ) as info:
        load_model(SAC, tmp_path / "nan.zip")
    assert "\n" not in str(info.value)
    load_model(SAC, tmp_path / "m.zip")  # the file it was made from loads


@pytest.mark.parametrize("entry", ["pytorch_variables.pth", "tensors.pth"])
@pytest.mark.parametrize("name", ["policy.actor.mu.weight", "__class__", "gamma", 3])
def test_a_planted_pytorch_variable_name_is_refused(tmp_path: Path, entry: str, name) -> None:
    """SB3's load sets ``model.<name>.data`` for each variable in either file: a dotted name would reach into the
    policy, ``__class__`` onto the class, an unknown one is a traceback; only the names SB3 saves are read."""
    save_model(_sac(), tmp_path / "m.zip")

    def plant(entries: dict[str, bytes]) -> None:
        entries.setdefault(entry, entries["pytorch_variables.pth"])
        _torch_entry(entries, entry, lambda t: t.update({name: torch.zeros(8, 3)}))

    _rewrite(tmp_path / "m.zip", tmp_path / "odd.zip", plant)
    with pytest.raises(CorruptFileError, match=rf"{entry} names '{name}', not a variable SB3 saves \(only "
                                               r"ent_coef_tensor, log_ent_coef\); pass trusted=True") as info:
        load_model(SAC, tmp_path / "odd.zip")
    assert "\n" not in str(info.value)
    assert load_model(SAC, tmp_path / "m.zip").log_ent_coef.shape == (1,)  # SB3's own variable loads


def test_an_oversized_entry_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sizes a zip declares are checked before any entry is read (a zip bomb declares gigabytes): with the
    limit lowered below policy.pth's size, loading stops at that check, naming the entry."""
    save_model(_sac(), tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        size = archive.getinfo("policy.pth").file_size
    monkeypatch.setattr(serialization, "MAX_ENTRY_BYTES", size - 1)
    with pytest.raises(CorruptFileError, match=rf"'policy.pth' unpacks to {size} bytes, more than the {size - 1}"):
        load_model(SAC, tmp_path / "m.zip")


def test_oversized_networks_are_refused_before_building(tmp_path: Path) -> None:
    """A load builds the networks the zip's settings describe before reading their weights: 20,000-unit layers
    (≈ 0.8 G weights for two nets) are refused first, in one line."""
    save_model(_sac(), tmp_path / "m.zip")

    def wide(safe: dict) -> None:
        safe["data"]["policy_kwargs"]["items"] = [
            ["net_arch", [20_000, 20_000]] if key == "net_arch" else [key, value]
            for key, value in safe["data"]["policy_kwargs"]["items"]]

    _rewrite(tmp_path / "m.zip", tmp_path / "wide.zip", lambda e: _edit_json(e, SAFE_ENTRY, wide))
    with pytest.raises(UnsafeFileError, match=r"networks of about 8e\+08 weights, more than the 1e\+08") as info:
        load_model(SAC, tmp_path / "wide.zip")
    assert "\n" not in str(info.value)
    assert serialization._network_size({"net_arch": [256, 256]}, gym.spaces.Box(-1, 1, (39,))) == 2 * (
        39 * 256 + 256 * 256)
    assert serialization._network_size({"net_arch": {"pi": [256], "qf": "abc"}}, None) is None  # the algorithm's


def test_a_relay_checkpoint_without_its_task_agent_is_refused(tmp_path: Path, vlm_venv) -> None:
    _relay(vlm_venv()).save(tmp_path / "r.zip")
    _rewrite(tmp_path / "r.zip", tmp_path / "cut.zip", lambda e: e.pop("task_agent.zip"))
    with pytest.raises(CorruptFileError, match=r"relay on but no task_agent\.zip \(damaged or edited\)"):
        RelayPolicy.load(tmp_path / "cut.zip", env=vlm_venv())
