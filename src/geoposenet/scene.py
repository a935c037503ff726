"""The one in-memory form of every dataset: a `Scene` of `Frame`s and the scene's 3D points.

Frames of a pose: `centre` is the camera centre in the world frame (metres, the dataset's own
coordinates) and `quaternion` the rotation world -> camera, (w, x, y, z), canonical (w >= 0).
Readers translate a file format into a Scene; nothing downstream knows which format it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from geoposenet.errors import DatasetError
from geoposenet.geometry import canonical_quaternion_np

Split = Literal["train", "val", "test"]
METRES = "m"
MODEL_UNITS = "model units"  # a reconstruction's arbitrary scale: no scale was given
SPLITS: tuple[Split, ...] = ("train", "test")  # the splits a dataset's files define
"""'val' frames are training frames held out for model selection (geoposenet.validation)."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels of an image of `width` x `height` pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        """The (3, 3) calibration matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass
class Frame:
    """One image with its pose.

    name: the image path relative to the scene root, with '/' separators (the frame's id).
    image: absolute path of the image file.
    centre: (3,) float64 camera centre, world frame, metres.
    quaternion: (4,) float64 world -> camera rotation, wxyz, canonical.
    sequence: the recording the frame belongs to (e.g. 'seq1', 'seq-03').
    split: 'train' or 'test' as the dataset says, or 'val' when held out from 'train'.
    point_ids: (k,) int64 indices into `Scene.points` of the 3D points seen in this image.
    intrinsics: the camera's intrinsics when the format gives them.
    synthetic: rendered by `geoposenet augment`, not captured (its sequence is listed in the
    dataset's augment.json).
    """

    name: str
    image: Path
    centre: np.ndarray
    quaternion: np.ndarray
    sequence: str
    split: Split
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    intrinsics: Intrinsics | None = None
    synthetic: bool = False

    def __post_init__(self) -> None:
        self.centre = np.asarray(self.centre, dtype=np.float64).reshape(3)
        self.quaternion = canonical_quaternion_np(self.quaternion).reshape(4)
        self.point_ids = np.asarray(self.point_ids, dtype=np.int64).reshape(-1)


@dataclass
class Scene:
    """A dataset in memory: frames of both splits and the scene's 3D points.

    root: the dataset folder; name: a short scene name; format: the reader that made it.
    points: (M, 3) float64 world points (SfM points, or depth back-projections).
    position_unit: the unit of centres and points: METRES, or MODEL_UNITS for a reconstruction
    read without a scale (--scale, --scale-from).
    """

    root: Path
    name: str
    format: str
    frames: list[Frame]
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.float64))
    position_unit: str = METRES

    def __post_init__(self) -> None:
        self.points = np.asarray(self.points, dtype=np.float64).reshape(-1, 3)

    def with_frames(self, frames: list[Frame]) -> Scene:
        """The same scene (points shared, not copied) with other frames."""
        return Scene(self.root, self.name, self.format, frames, self.points, self.position_unit)

    def split(self, split: Split) -> list[Frame]:
        """The frames of one split, in reading order."""
        return [f for f in self.frames if f.split == split]

    def subset(self, split: Split) -> Scene:
        """A Scene with only the frames of `split` (points shared, not copied)."""
        return self.with_frames(self.split(split))

    @property
    def centres(self) -> np.ndarray:
        """(N, 3) camera centres of all frames."""
        return np.stack([f.centre for f in self.frames]) if self.frames else np.zeros((0, 3))

    @property
    def quaternions(self) -> np.ndarray:
        """(N, 4) world -> camera quaternions of all frames."""
        return np.stack([f.quaternion for f in self.frames]) if self.frames else np.zeros((0, 4))

    def train_centre(self) -> np.ndarray:
        """(3,) mean training camera centre: the origin of the centred frame the network uses."""
        train = self.split("train")
        if not train:
            raise DatasetError(self.root, "the scene has no training frames")
        return np.mean([f.centre for f in train], axis=0)

    def validate(self) -> list[str]:
        """Sanity checks; returns a list of problems (empty when the scene is usable)."""
        problems: list[str] = []
        names: set[str] = set()
        for frame in self.frames:
            if frame.name in names:
                problems.append(f"{frame.name}: duplicate frame")
            names.add(frame.name)
            if not (np.isfinite(frame.centre).all() and np.isfinite(frame.quaternion).all()):
                problems.append(f"{frame.name}: non-finite pose")
            if frame.point_ids.size and (
                frame.point_ids.min() < 0 or frame.point_ids.max() >= len(self.points)
            ):
                problems.append(f"{frame.name}: point index out of range")
        if not np.isfinite(self.points).all():
            problems.append("non-finite 3D points")
        for split in SPLITS:
            if not self.split(split):
                problems.append(f"no {split} frames")
        return problems

    def summary(self) -> dict[str, object]:
        """Frames per split, scene extent (in `position_unit`) and points per frame, for
        `geoposenet check`."""
        centres = self.centres
        counts = np.array([f.point_ids.size for f in self.frames]) if self.frames else np.zeros(1)
        extent = (centres.max(0) - centres.min(0)).tolist() if len(centres) else [0.0] * 3
        return {
            "name": self.name,
            "format": self.format,
            "frames": {s: len(self.split(s)) for s in ("train", "val", "test")},
            "synthetic_frames": sum(f.synthetic for f in self.frames),
            "sequences": sorted({f.sequence for f in self.frames}),
            "camera_extent": [round(v, 3) for v in extent],
            "position_unit": self.position_unit,
            "points": len(self.points),
            "points_per_frame": {
                "min": int(counts.min()),
                "median": float(np.median(counts)),
                "max": int(counts.max()),
            },
        }
