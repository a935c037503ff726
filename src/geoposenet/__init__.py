"""geoposenet: absolute camera pose regression (PoseNet) with the geometric loss functions of
Kendall & Cipolla, CVPR 2017."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public API, imported lazily so that `import geoposenet` (and the CLI's --help) stays fast.
_EXPORTS = {
    "load_scene": "geoposenet.readers",
    "Scene": "geoposenet.scene",
    "Frame": "geoposenet.scene",
    "PoseNet": "geoposenet.models",
    "fit": "geoposenet.train",
    "TrainConfig": "geoposenet.config",
    "evaluate": "geoposenet.evaluation",
    "InputError": "geoposenet.errors",
    "DatasetError": "geoposenet.errors",
}

__all__ = [
    "DatasetError",
    "Frame",
    "InputError",
    "PoseNet",
    "Scene",
    "TrainConfig",
    "__version__",
    "evaluate",
    "fit",
    "load_scene",
]

if TYPE_CHECKING:
    from geoposenet.config import TrainConfig
    from geoposenet.errors import DatasetError, InputError
    from geoposenet.evaluation import evaluate
    from geoposenet.models import PoseNet
    from geoposenet.readers import load_scene
    from geoposenet.scene import Frame, Scene
    from geoposenet.train import fit


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'geoposenet' has no attribute {name!r}")
