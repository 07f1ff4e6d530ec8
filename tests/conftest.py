"""Shared fixtures: every test session uses a private Minari store and artifact cache."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def minari_store(tmp_path_factory):
    """A private Minari store with the three PI datasets generated once per session."""
    from polycstr_lib.reactor.datasets import ensure_dataset
    from polycstr_lib.reactor.scenarios import SCENARIOS

    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    for name in SCENARIOS:
        ensure_dataset(name)
    yield root
    if old is None:
        os.environ.pop("MINARI_DATASETS_PATH", None)
    else:
        os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(autouse=True)
def _training_on(monkeypatch):
    """Tests train: a POLYCSTR_NO_TRAINING=1 left in the shell (make verify) does not leak in."""
    monkeypatch.delenv("POLYCSTR_NO_TRAINING", raising=False)
