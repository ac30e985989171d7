"""A restricted evaluator for rl-zoo's Python-expression config strings (``policy_kwargs``, ``replay_buffer_*``).

rl-zoo runs ``eval`` on these YAML strings; a YAML file or ``--hyperparams`` entry is not code, so here they are
parsed (``ast.parse(text, mode="eval")``) and only this grammar is evaluated:

- literals: finite numbers, strings, ``True``/``False``/``None``, lists, tuples, dicts, unary ``-``/``+`` on a number;
- ``dict(key=value, ...)`` (keyword arguments only);
- names from a fixed table: ``nn.<activation>`` (also ``th.nn.`` / ``torch.nn.``) for ReLU, Tanh, ELU, LeakyReLU,
  GELU, SiLU, Sigmoid; ``th.optim.<optimizer>`` (also ``torch.optim.``) for Adam, AdamW, SGD, RMSprop.

``replay_buffer_class`` is ``None`` or one class name: ``ReplayBuffer``, ``DictReplayBuffer``, ``HerReplayBuffer``
(rl-zoo's spelling), ``VLMReplayBuffer``, or one of their dotted module paths (``stable_baselines3.HerReplayBuffer``,
``furl_wrappers.vlm_buffer.VLMReplayBuffer``, ...).

Anything else (other names or attributes, other calls, lambdas, subscripts, operators, comprehensions, ``1e999``,
expressions over :data:`MAX_LENGTH` characters, ...) is refused with one line naming the key, the offending piece
and what is allowed.

Example:
    >>> safe_eval("dict(net_arch=[256, 256], activation_fn=nn.ReLU)", "policy_kwargs")
    {'net_arch': [256, 256], 'activation_fn': <class 'torch.nn.modules.activation.ReLU'>}
    >>> safe_eval("__import__('os')", "policy_kwargs")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: policy_kwargs: '__import__' is not allowed (literals, dict(...), nn.<activation> (ReLU, ...)
"""

from __future__ import annotations

import ast
import importlib
import math
from typing import Any, NoReturn

__all__ = ["safe_eval", "ACTIVATIONS", "OPTIMIZERS", "BUFFERS"]

#: longest expression read (rl-zoo's longest policy_kwargs are well under 500 characters)
MAX_LENGTH = 10_000
ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid")
OPTIMIZERS = ("Adam", "AdamW", "SGD", "RMSprop")
#: replay buffer class name → its module
BUFFERS = {"ReplayBuffer": "stable_baselines3.common.buffers", "DictReplayBuffer": "stable_baselines3.common.buffers",
           "HerReplayBuffer": "stable_baselines3", "VLMReplayBuffer": "furl_wrappers.vlm_buffer"}


def _table(key: str) -> dict[str, tuple[str, str]]:
    """Allowed dotted names for a key → ``(module, attribute)``."""
    if key == "replay_buffer_class":
        table = {name: (module, name) for name, module in BUFFERS.items()}
        table.update({f"{module}.{name}": (module, name) for name, module in BUFFERS.items()})
        table.update({"stable_baselines3.her.HerReplayBuffer": ("stable_baselines3", "HerReplayBuffer"),
                      "furl_wrappers.VLMReplayBuffer": ("furl_wrappers.vlm_buffer", "VLMReplayBuffer")})
        return table
    table = {f"{prefix}.{name}": ("torch.nn", name) for prefix in ("nn", "th.nn", "torch.nn") for name in ACTIVATIONS}
    table.update({f"{prefix}.{name}": ("torch.optim", name) for prefix in ("th.optim", "torch.optim")
                  for name in OPTIMIZERS})
    return table


def _allowed(key: str) -> str:
    if key == "replay_buffer_class":
        return f"None, {', '.join(BUFFERS)}"
    return (f"literals, dict(...), nn.<activation> ({', '.join(ACTIVATIONS)}), th.optim.<optimizer> "
            f"({', '.join(OPTIMIZERS)})")


def _dotted(node: ast.AST) -> str | None:
    """``"a.b.c"`` for a chain of names and attributes, else ``None``."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _parse(text: str, key: str, error: type) -> ast.expr:
    """The expression's tree (a one-line ``error`` for text that is too long, not Python, or nested too deeply)."""
    if len(text) > MAX_LENGTH:  # CPython's parser recurses per operator: 60k terms overflow its stack
        raise error(f"{key}: the expression is {len(text)} characters long, more than the {MAX_LENGTH} allowed")
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise error(f"{key}: {text[:60]!r} is not a Python expression ({exc.msg}); allowed: {_allowed(key)}") from None
    except (RecursionError, MemoryError):
        raise error(f"{key}: the expression is nested too deeply to read; allowed: {_allowed(key)}") from None


class _Evaluator:
    """Evaluates one parsed config string in the grammar above, node by node; anything else is refused."""

    def __init__(self, text: str, key: str, error: type) -> None:
        self.text, self.key, self.error, self.table = text.strip(), key, error, _table(key)

    def refuse(self, node: ast.AST, why: str = "") -> NoReturn:
        piece = ast.get_source_segment(self.text, node) or type(node).__name__
        piece = piece if len(piece) <= 60 else piece[:57] + "..."
        raise self.error(f"{self.key}: {piece!r} is not allowed{why} ({_allowed(self.key)})")

    def value(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.value(n) if not isinstance(n, ast.Starred) else self.refuse(n) for n in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict):
            return self.literal_dict(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return self.signed(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, (ast.Name, ast.Attribute)):
            return self.name(node)
        self.refuse(node)

    def constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, float) and not math.isfinite(node.value):
            self.refuse(node, " (not a finite number)")  # 1e999 reads as inf
        if node.value is None or isinstance(node.value, (bool, int, float, str)):
            return node.value
        self.refuse(node)

    def literal_dict(self, node: ast.Dict) -> dict[Any, Any]:
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:  # {**x}
                self.refuse(v)
            item = self.value(k)
            try:
                out[item] = self.value(v)
            except TypeError:  # an unhashable key
                self.refuse(k, " as a dict key")
        return out

    def signed(self, node: ast.UnaryOp) -> Any:
        operand = node.operand
        if not (isinstance(operand, ast.Constant) and isinstance(operand.value, (int, float))
                and not isinstance(operand.value, bool)):
            self.refuse(node)
        number = self.value(operand)  # a finite number, or refused
        return -number if isinstance(node.op, ast.USub) else number

    def call(self, node: ast.Call) -> dict[str, Any]:
        if not (isinstance(node.func, ast.Name) and node.func.id == "dict"):
            if _dotted(node.func) not in self.table:
                self.value(node.func)  # names the offending name inside, e.g. '__import__'
            self.refuse(node, ": no calls but dict(...)")
        if node.args:
            self.refuse(node.args[0], " in dict(...): use dict(key=value, ...)")
        out = {}
        for keyword in node.keywords:
            if keyword.arg is None:  # dict(**x)
                self.refuse(keyword)
            out[keyword.arg] = self.value(keyword.value)
        return out

    def name(self, node: ast.Name | ast.Attribute) -> Any:
        dotted = _dotted(node)
        if dotted in self.table:
            module, attribute = self.table[dotted]
            return getattr(importlib.import_module(module), attribute)
        if dotted is None and isinstance(node, ast.Attribute):
            self.value(node.value)  # an offending piece inside comes first, e.g. '__import__' in __import__('os').x
        self.refuse(node)


def safe_eval(text: str, key: str, error: type = ValueError) -> Any:
    """The value of the config string ``text`` of ``key`` in the restricted grammar above.

    Raises:
        error (``ValueError`` unless given, e.g. ``ConfigError``): ``"<key>: '<piece>' is not allowed (<grammar>)"``.
    """
    body = _parse(text, key, error)
    evaluator = _Evaluator(text, key, error)
    if key == "replay_buffer_class" and not (isinstance(body, (ast.Name, ast.Attribute))
                                             or (isinstance(body, ast.Constant) and body.value is None)):
        evaluator.refuse(body)  # a class name or None, nothing else
    return evaluator.value(body)
