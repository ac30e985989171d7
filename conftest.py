"""Doctest collection for the package: the optional JAX backbones' modules only where the jax extra (sbx) is
installed (their tests in tests/ skip themselves the same way)."""

import importlib.util

_JAX_MODULES = ["furl_wrappers/jax_backbones.py", "furl_wrappers/jax_state.py"]
collect_ignore = [] if importlib.util.find_spec("sbx") else _JAX_MODULES
