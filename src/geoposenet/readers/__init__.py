"""Dataset readers: each turns one on-disk format into a `Scene`.

`load_scene` detects the format from the folder (Cambridge Landmarks, 7-Scenes, COLMAP, nerfstudio)
and raises a DatasetError naming file and line at the first problem; `check_dataset` reads the same
way but collects every problem (and also decodes every image) for `geoposenet check`.
Reconstructions in arbitrary units (COLMAP, nerfstudio) become metres here, at the boundary, when
a scale is given (`scale`, `scale_from`: see _scale); without one they stay in "model units",
which every report then names instead of "m".
No frame is dropped in silence: a file the format makes a frame but that lacks its pose, image or
(where the others have one) depth map is a problem. Files that are not frames but may be wanted
(images beside the labelled ones, images a COLMAP model does not register) are notes: `check`
lists them with a count, training goes on.
Readers share helpers in `_common` / `_nvm` and never import each other.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from geoposenet.errors import DatasetError, InputError
from geoposenet.readers import cambridge, colmap, nerfstudio, sevenscenes
from geoposenet.readers._augmented import mark_synthetic
from geoposenet.readers._common import ImageCheck, Problems
from geoposenet.readers._scale import check_choice, in_metres, scale_from_file
from geoposenet.scene import METRES, Scene

__all__ = ["FORMATS", "CheckReport", "check_dataset", "detect_format", "load_scene"]

READERS: dict[str, ModuleType] = {
    "cambridge": cambridge, "7scenes": sevenscenes, "colmap": colmap, "nerfstudio": nerfstudio,
}  # fmt: skip
FORMATS = ("auto", *READERS)
_READER_ARGS = {"root", "problems", "image_check"}


def detect_format(path: str | Path) -> str:
    """The format of the dataset folder `path`: 'cambridge', '7scenes', 'colmap' or 'nerfstudio'."""
    root = _folder(path)
    for name, reader in READERS.items():
        if reader.looks_like(root):
            return name
    looked_for = "; ".join(reader.LOOKED_FOR for reader in READERS.values())
    raise DatasetError(root, f"unknown dataset format: looked for {looked_for}")


def load_scene(
    path: str | Path,
    split: Literal["all", "train", "test"] = "all",
    format: str = "auto",
    *,
    require_images: bool = True,
    scale: float | None = None,
    scale_from: str | Path | None = None,
    **options: Any,
) -> Scene:
    """Read the dataset folder `path` into a Scene, keeping the frames of `split` ('all' keeps
    both; points are shared). `require_images=False` skips the image existence check (for label
    files without images). `scale` (metres per model unit) or `scale_from` (a file of known
    distances) put a COLMAP or nerfstudio scene in metres. Format options: 7scenes
    `points_per_frame=512, seed=0, cache=True`; colmap and nerfstudio `images=None` (image
    folder), `test_list=None` (file of test image names), `test_every=None`.
    Raises DatasetError on bad data."""
    if split not in ("all", "train", "test"):
        raise InputError(f"split must be 'all', 'train' or 'test', got {split!r}")
    root = _folder(path)
    name = _format(root, format)
    reader = _reader(name, options, scale, scale_from)
    image_check: ImageCheck = "exists" if require_images else "none"
    problems = Problems(strict=True)
    scene = reader.read(root, problems, image_check=image_check, **options)
    if not scene.frames:
        raise DatasetError(root, f"the {name} dataset has no frames")
    scene = mark_synthetic(_scaled(scene, scale, scale_from, problems), problems)
    return scene if split == "all" else scene.subset(split)


@dataclass
class CheckReport:
    """The result of `check_dataset`: every problem found (each naming file and line), the
    scene as far as it could be read (None when the format is unknown), and the notes (files
    that are not frames; they do not make the dataset bad)."""

    path: Path
    format: str | None
    problems: list[str] = field(default_factory=list)
    scene: Scene | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def describe(self) -> str:
        """The list of problems, or a summary of the scene when there are none; then the notes."""
        if self.problems:
            head = f"{self.path}: {len(self.problems)} problem(s) found"
            head += f" in this {self.format} dataset:" if self.format else ":"
            lines = [head, *(f"  - {p}" for p in self.problems)]
        else:
            assert self.scene is not None
            lines = [_summary_text(self.path, self.scene)]
        if self.notes:
            lines += [f"  notes ({len(self.notes)}, not problems):"]
            lines += [f"  - {note}" for note in self.notes]
        return "\n".join(lines)


def check_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    require_images: bool = True,
    scale: float | None = None,
    scale_from: str | Path | None = None,
    **options: Any,
) -> CheckReport:
    """Read the dataset like `load_scene`, but collect every problem instead of stopping at the
    first, decode every image (when `require_images`), and run the Scene's sanity checks."""
    try:
        root = _folder(path)
        name = _format(root, format)
    except DatasetError as error:
        return CheckReport(Path(path), None, [str(error)])
    reader = _reader(name, options, scale, scale_from)
    problems = Problems(strict=False)
    image_check: ImageCheck = "decode" if require_images else "none"
    scene = reader.read(root, problems, image_check=image_check, **options)
    if scene.frames:
        scene = mark_synthetic(_scaled(scene, scale, scale_from, problems), problems)
    messages = [str(error) for error in problems.errors]
    messages += [str(DatasetError(root, problem)) for problem in scene.validate()]
    return CheckReport(root, name, messages, scene, problems.notes)


def _folder(path: str | Path) -> Path:
    root = Path(path)
    if not root.exists():
        raise DatasetError(root, "dataset folder not found")
    if not root.is_dir():
        raise DatasetError(root, "not a folder: a dataset is a folder")
    return root.resolve()


def _format(root: Path, format: str) -> str:
    if format == "auto":
        return detect_format(root)
    if format not in READERS:
        raise InputError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    return format


def _reader(
    name: str, options: dict[str, Any], scale: float | None, scale_from: str | Path | None
) -> ModuleType:
    """The reader module of format `name`, after checking `options` against its parameters and
    that a scale is only given to a format in arbitrary units."""
    reader = READERS[name]
    accepted = set(inspect.signature(reader.read).parameters) - _READER_ARGS
    unknown = sorted(set(options) - accepted)
    if unknown:
        flags = ", ".join(f"--{option.replace('_', '-')} ({option})" for option in unknown)
        raise InputError(
            f"unknown option(s) for the {name} format: {flags}; "
            f"its options: {', '.join(sorted(accepted)) or 'none'}"
        )
    check_choice(scale, scale_from)
    if (scale is not None or scale_from is not None) and reader.POSITION_UNIT == METRES:
        flag = "--scale" if scale is not None else "--scale-from"
        raise InputError(f"{flag}: the {name} format is in metres already")
    return reader


def _scaled(
    scene: Scene, scale: float | None, scale_from: str | Path | None, problems: Problems
) -> Scene:
    """`scene` in metres when a scale is given (directly or from a file), else as it is."""
    if scale_from is not None:
        scale = scale_from_file(Path(scale_from), scene, problems)
    return scene if scale is None else in_metres(scene, scale)


def _summary_text(root: Path, scene: Scene) -> str:
    summary = scene.summary()
    frames: dict[str, int] = summary["frames"]  # type: ignore[assignment]
    sequences: list[str] = summary["sequences"]  # type: ignore[assignment]
    extent: list[float] = summary["camera_extent"]  # type: ignore[assignment]
    per_frame: dict[str, float] = summary["points_per_frame"]  # type: ignore[assignment]
    synthetic = summary["synthetic_frames"]
    return "\n".join(
        [
            f"{root}: OK, {scene.format} dataset '{scene.name}'",
            f"  frames: {frames['train']} train, {frames['test']} test"
            + (f" ({synthetic} of the training frames synthesised)" if synthetic else ""),
            f"  sequences ({len(sequences)}): {', '.join(sequences)}",
            "  camera extent: " + " x ".join(f"{v:g}" for v in extent) + f" {scene.position_unit}",
            f"  3D points: {summary['points']}; per frame min {per_frame['min']}, "
            f"median {per_frame['median']:g}, max {per_frame['max']}",
        ]
    )
