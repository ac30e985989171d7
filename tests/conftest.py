"""Shared test set-up: a private cache directory, so tests never read or write the user's cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    os.environ["FURL_CACHE_DIR"] = str(tmp_path_factory.mktemp("furl_cache"))
