"""Shared fixtures: a private cache folder for the whole session and the rendered `tiny` scene."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# No per-example deadline: a busy machine must not turn a slow example into a failure.
settings.register_profile("geoposenet", deadline=None)
settings.load_profile("geoposenet")


def pytest_configure(config: pytest.Config) -> None:
    # Tests never write into the user's ~/.cache; 1 thread per xdist worker keeps 2 cores busy.
    os.environ["GEOPOSENET_CACHE"] = tempfile.mkdtemp(prefix="geoposenet-test-cache-")
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic `tiny` scene in Cambridge format (rendered once per test worker)."""
    from geoposenet.synthetic import synthesize

    root = tmp_path_factory.mktemp("tiny") / "scene"
    synthesize(root, preset="tiny", format="cambridge", seed=0)
    return root
