"""safe_eval: rl-zoo's config strings evaluated in a fixed grammar; everything outside it refused in one line.

(What each allowed form gives, and that split_config uses it for every config key: tests/test_zoo.py.)
"""

from __future__ import annotations

import pytest

from furl_wrappers.runs.safe_eval import safe_eval
from furl_wrappers.runs.zoo_config import ConfigError


def test_default_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="^policy_kwargs: '__import__' is not allowed"):
        safe_eval("__import__('os').system('echo pwned')", "policy_kwargs")
    assert safe_eval("dict(net_arch=[64, 64], use_sde=False)", "policy_kwargs") == {"net_arch": [64, 64],
                                                                                  "use_sde": False}


@pytest.mark.parametrize("key, text, piece", [
    ("policy_kwargs", "nn.Module.__subclasses__()", "nn.Module.__subclasses__"),
    ("policy_kwargs", "().__class__", "().__class__"),
    ("policy_kwargs", "().__class__.__bases__[0].__subclasses__()", "().__class__.__bases__[0]"),
    ("policy_kwargs", "dict(activation_fn=nn.ReLU.__init__.__globals__)", "nn.ReLU.__init__.__globals__"),
    ("policy_kwargs", "th.load", "th.load"),
    ("policy_kwargs", "dict(f=lambda: 0)", "lambda: 0"),
    ("policy_kwargs", "[1, 2][0]", "[1, 2][0]"),
    ("policy_kwargs", "[x for x in (1, 2)]", "[x for x in (1, 2)]"),
    ("policy_kwargs", "dict(activation_fn=nn.ReLU())", "nn.ReLU()"),
    ("policy_kwargs", "getattr(nn, 'ReLU')", "getattr"),
    ("policy_kwargs", "open('x')", "open"),
    ("policy_kwargs", "dict(n=2 ** 100)", "2 ** 100"),
    ("policy_kwargs", "dict(**{'a': 1})", "**{'a': 1}"),
    ("policy_kwargs", "np.float32", "np.float32"),
    ("replay_buffer_kwargs", "dict(lag=importlib.import_module('os'))", "importlib.import_module"),
    ("replay_buffer_class", "importlib.import_module('furl_wrappers.vlm_buffer').VLMReplayBuffer",
     "importlib.import_module"),
    ("replay_buffer_class", "nn.ReLU", "nn.ReLU"),
    ("replay_buffer_class", "'HerReplayBuffer'", "'HerReplayBuffer'"),
])
def test_config_strings_outside_the_grammar_are_refused(key: str, text: str, piece: str) -> None:
    with pytest.raises(ConfigError) as info:
        safe_eval(text, key, error=ConfigError)
    message = str(info.value)
    assert message.startswith(f"{key}: {piece!r} is not allowed") and "\n" not in message
    assert ("HerReplayBuffer" if key == "replay_buffer_class" else "th.optim.<optimizer>") in message.split("(", 1)[1]


def test_config_strings_that_are_not_expressions() -> None:
    with pytest.raises(ConfigError, match="policy_kwargs: 'net_arch=\\[64\\]' is not a Python expression"):
        safe_eval("net_arch=[64]", "policy_kwargs", error=ConfigError)


@pytest.mark.parametrize("text", ["1e999", "dict(net_arch=[64, -1e999])", "[1e308 * 10]"])
def test_non_finite_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"policy_kwargs: '(-?1e999|1e308 \* 10)' is not allowed"):
        safe_eval(text, "policy_kwargs")


def test_huge_or_deep_expressions_are_one_line() -> None:
    with pytest.raises(ValueError, match=r"policy_kwargs: the expression is 119999 characters long, more than the "
                                         r"10000 allowed"):
        safe_eval("+".join(["1"] * 60_000), "policy_kwargs")
    deep = "+".join(["1"] * 4_000)  # under the length limit, deep enough for the parser on some Pythons
    with pytest.raises(ValueError, match=r"policy_kwargs: .*(not allowed|nested too deeply)") as info:
        safe_eval(deep, "policy_kwargs")
    assert "\n" not in str(info.value)
