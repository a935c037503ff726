"""Shared fixtures: a private cache folder for the whole session, the rendered `tiny` scene, and
the benchmark scripts as modules."""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


@pytest.fixture(scope="session")
def benchmark_script() -> Callable[[str], ModuleType]:
    """Import benchmarks/NAME.py as a module (the scripts are not a package)."""

    def load(name: str) -> ModuleType:
        script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(f"{name}_benchmark", script)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # a dataclass of the script looks its module up there
        spec.loader.exec_module(module)
        return module

    return load
