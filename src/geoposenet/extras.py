"""Optional dependencies, installed as pip extras: which extra provides a module, and the one
message a user sees when it is missing (an InputError: exit code 2).

`pip install geoposenet` is enough to predict (checkpoint or ONNX); the extras add the rest.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# top-level module -> (extra, what needs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "matplotlib": ("plots", "plots and report.md"),
    "pycolmap": ("colmap", "COLMAP models"),
    "skimage": ("synthetic", "the synthetic room (its posters are scikit-image's sample photos)"),
    "onnx": ("onnx", "ONNX export"),
    "onnxruntime": ("onnx", "ONNX models"),
    "onnxscript": ("onnx", "ONNX export"),
}


def missing_message(module: str) -> str:
    """What to tell a user when the optional `module` is not installed."""
    extra, purpose = EXTRAS[module]
    return (
        f"{module} is not installed ({purpose} need it): "
        f"pip install 'geoposenet[{extra}]' (or 'geoposenet[all]')"
    )


def require(module: str) -> ModuleType:
    """Import the optional `module` (a key of EXTRAS), or raise InputError naming its extra."""
    from geoposenet.errors import InputError

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise InputError(missing_message(module)) from error


def missing_extra(error: ImportError) -> str | None:
    """The message for an ImportError of an optional module (by its top-level name), else None."""
    name = (error.name or "").split(".")[0]
    return missing_message(name) if name in EXTRAS else None
