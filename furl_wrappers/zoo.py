"""``python -m furl_wrappers.zoo {train,enjoy} [--trusted] ...``: the rl-zoo launcher's entry point.

rl-zoo cannot import FuRL's algorithms by name, so this hands over to :func:`furl_wrappers.runs.zoo_launcher.main`:
rl-zoo with ``relay`` (``relay_tqc``, ``relay_crossq``, ``relay_drq``) and ``drq`` added (and, with the jax
extra, ``sac_sbx``, ``relay_sbx``, ``crossq_sbx``, ``relay_crossq_sbx``, ``tqc_sbx``, ``relay_tqc_sbx``), samplers for
``-optimize``, ``--seed`` selecting the task instance, and run files and model zips read without running code
from them (``--trusted`` opts in, for runs you made). The YAML configs are read by
:mod:`furl_wrappers.runs.zoo_config`.
"""

from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    """Run the launcher with ``argv`` (default: the command line)."""
    from furl_wrappers.runs.zoo_launcher import main as launch  # rl-zoo is imported only when launching

    launch(argv)


if __name__ == "__main__":
    main()
