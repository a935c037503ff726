"""`synthesize`: render the built-in room along its sequences and write it as a dataset.

The output folder is complete only when OUT/synth.json (preset, seed, format, version) exists: it is
written last, atomically. A call whose marker matches returns at once without rendering. A folder
holding an earlier or interrupted render (marker or OUT/.synth-partial) is cleared and rendered
again; any other non-empty folder is refused.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from geoposenet.baselines import ANGLE_PER_METRE
from geoposenet.cache import atomic_write_text
from geoposenet.errors import InputError
from geoposenet.geometry import matrix_to_quaternion_np
from geoposenet.scene import Intrinsics
from geoposenet.synthetic.render import Camera, Caster, expose, render_colour
from geoposenet.synthetic.room import Room, build_room, sample_points
from geoposenet.synthetic.trajectory import walk
from geoposenet.synthetic.writers import (
    DEPTH_CAMERA,
    FORMATS,
    FrameRecord,
    write_frame_files,
    write_metadata,
)
from geoposenet.threads import ordered_map

VERSION = 1
MARKER = "synth.json"
PARTIAL = ".synth-partial"


@dataclass(frozen=True)
class Preset:
    """Scene parameters: image size, frames per train/test sequence, walk length per sequence
    (metres), texel size (metres), number of surface points, sensor noise std (0-1 scale)."""

    width: int
    height: int
    train: tuple[int, ...]
    test: tuple[int, ...]
    walk_m: float
    texel: float
    points: int
    noise: float = 0.01

    @property
    def camera(self) -> Camera:
        """Kinect-like field of view (f = 585 at 640 px wide: 57.5 deg horizontal)."""
        return Camera(self.width, self.height, 585.0 * self.width / 640)


PRESETS = {
    "room": Preset(
        320, 240, train=(250,) * 4, test=(200,) * 2, walk_m=40.0, texel=0.01, points=5000
    ),
    "tiny": Preset(80, 60, train=(10, 10), test=(10,), walk_m=6.0, texel=0.04, points=800),
}


@dataclass
class SynthReport:
    """What `synthesize` produced (or found already complete, `reused`)."""

    root: Path
    preset: str
    format: str
    seed: int
    frames: dict[str, int]
    difficulty: dict[str, float]
    camera: dict[str, float]
    reused: bool = False
    seconds: float = 0.0

    def describe(self) -> str:
        """A few human-readable lines."""
        d = self.difficulty
        how = "reused existing render" if self.reused else f"rendered in {self.seconds:.1f} s"
        return (
            f"synthetic '{self.preset}' (seed {self.seed}) written as {self.format} to {self.root}"
            f" ({how})\n"
            f"frames: {self.frames['train']} train, {self.frames['test']} test; images "
            f"{int(self.camera['width'])}x{int(self.camera['height'])}, "
            f"f = {self.camera['focal']:.1f} px ({self.camera['hfov_deg']:.1f} deg horizontal)\n"
            f"difficulty (test frame -> nearest training pose): median "
            f"{d['median_position_m']:.3f} m, {d['median_rotation_deg']:.2f} deg"
        )


def difficulty(
    train_c: np.ndarray, train_q: np.ndarray, test_c: np.ndarray, test_q: np.ndarray
) -> dict[str, float]:
    """For each test pose the nearest training pose by position_m + angle_deg / 25; returns the
    medians of the position (m) and angle (deg) gaps to it."""
    dist = np.linalg.norm(test_c[:, None] - train_c[None], axis=-1)
    dot = np.clip(np.abs(test_q @ train_q.T), 0.0, 1.0)
    angle = np.degrees(2 * np.arccos(dot))
    best = np.argmin(dist + angle / ANGLE_PER_METRE, axis=1)
    rows = np.arange(len(test_c))
    return {
        "median_position_m": round(float(np.median(dist[rows, best])), 4),
        "median_rotation_deg": round(float(np.median(angle[rows, best])), 3),
        "median_nearest_position_only_m": round(float(np.median(dist.min(axis=1))), 4),
    }


def visible(
    points: np.ndarray,
    centre: np.ndarray,
    rotation: np.ndarray,
    camera: Intrinsics,
    depth: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ids (k,) and pixel coordinates (k, 2) (centres at +0.5) of the world `points` (M, 3) in
    front of the camera at `centre` (3,) with world -> camera `rotation` (3, 3), inside the
    image and, when a rendered `depth` (H, W) metres is given (0: unknown), not occluded:
    within 1 cm + 2 % of the rendered depth at their pixel."""
    cam = (points - centre) @ rotation.T
    z = cam[:, 2]
    front = z > 0.05
    u = camera.fx * cam[:, 0] / np.where(front, z, 1.0) + camera.cx
    v = camera.fy * cam[:, 1] / np.where(front, z, 1.0) + camera.cy
    inside = front & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    ids = np.flatnonzero(inside)
    if depth is not None:
        rendered = depth[v[ids].astype(int), u[ids].astype(int)]
        keep = (rendered > 0) & (np.abs(rendered - z[ids]) <= 0.01 + 0.02 * z[ids])
        ids = ids[keep]
    return ids, np.stack([u[ids], v[ids]], axis=1)


def sequence_poses(
    preset: Preset, room: Room, seed: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(split, centres (N, 3), world -> camera rotations (N, 3, 3)) of every sequence, in order."""
    out = []
    splits = [("train", n) for n in preset.train] + [("test", n) for n in preset.test]
    for number, (split, frames) in enumerate(splits, start=1):
        rng = np.random.default_rng([seed, 21, number])
        centres, rotations = walk(rng, room.boxes, frames, preset.walk_m)
        out.append((split, centres, rotations))
    return out


def sequence_gain(seed: int, number: int) -> np.ndarray:
    """(3,) per-channel light gain of sequence `number` (1-based): brightness times tint."""
    light = np.random.default_rng([seed, 31, number])
    return light.uniform(0.75, 1.15) * light.uniform(0.9, 1.1, 3)


def noise_seed(seed: int, number: int, index: int) -> int:
    """The sensor-noise seed of frame `index` (0-based) of sequence `number` (1-based)."""
    return (seed * 1_000_003 + number * 10_007 + index) % 2**63


def _prepare(out: Path, marker: dict) -> SynthReport | None:
    """Return the saved report when `out` is complete for `marker`; else clear our own earlier
    output (or refuse a foreign non-empty folder) and mark the folder as partial."""
    done = out / MARKER
    if done.is_file():
        saved = json.loads(done.read_text())
        if all(saved.get(k) == v for k, v in marker.items()):
            return SynthReport(
                out,
                saved["preset"],
                saved["format"],
                saved["seed"],
                saved["frames"],
                saved["difficulty"],
                saved["camera"],
                reused=True,
            )
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; synthesize needs a folder")
    if out.exists() and any(out.iterdir()):
        if not (done.exists() or (out / PARTIAL).exists()):
            raise InputError(
                f"{out} is not empty and holds no synthetic scene; choose a new folder"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / PARTIAL).write_text(json.dumps(marker))
    return None


def synthesize(
    out: Path, preset: str = "room", format: str = "cambridge", seed: int = 0
) -> SynthReport:
    """Render preset `preset` with `seed` into folder `out` in `format` (cambridge, 7scenes,
    colmap or nerfstudio) and write OUT/difficulty.json; reuse a complete earlier render of the
    same settings."""
    if preset not in PRESETS:
        raise InputError(f"unknown synthetic preset {preset!r}; choose from {sorted(PRESETS)}")
    if format not in FORMATS:
        raise InputError(f"unknown format {format!r}; choose from {list(FORMATS)}")
    out = Path(out)
    marker = {"preset": preset, "seed": seed, "format": format, "version": VERSION}
    saved = _prepare(out, marker)
    if saved is not None:
        return saved
    return _render(out, preset, format, seed, marker)


# sequence number, frame index, split, centre, cam_from_world rotation, quaternion, gain
_FramePose = tuple[int, int, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _render_frames(
    out: Path, format: str, p: Preset, room: Room, points: np.ndarray, seed: int
) -> list[FrameRecord]:
    """Render every frame of every sequence and write its files; returns the frame records.
    Frames render in torch's thread count of threads (`threads.ordered_map`, one torch thread
    each: the same files whatever the count); PNG encoding (zlib releases the GIL) runs in one
    more thread, overlapping the rendering."""
    camera = p.camera
    intrinsics = Intrinsics(camera.width, camera.height, camera.focal, camera.focal,
                            camera.cx, camera.cy)  # fmt: skip
    caster = Caster(room.faces, camera)
    depth_caster = Caster(room.faces, DEPTH_CAMERA) if format == "7scenes" else None
    poses = [
        (number, index, split, centre, rotation, quaternion, sequence_gain(seed, number))
        for number, (split, centres, rotations) in enumerate(sequence_poses(p, room, seed), 1)
        for index, (centre, rotation, quaternion) in enumerate(
            zip(centres, rotations, matrix_to_quaternion_np(rotations), strict=True)
        )
    ]  # fmt: skip

    def render(pose: _FramePose) -> tuple[FrameRecord, np.ndarray, np.ndarray | None]:
        number, index, split, centre, rotation, quaternion, gain = pose
        depth, face, hits = caster.cast(centre, rotation)
        colour = render_colour(room, face, hits)
        image = expose(colour, gain, p.noise, noise_seed(seed, number, index))
        ids, uv = visible(points, centre, rotation, intrinsics, depth.numpy())
        record = FrameRecord(number, index, split, centre, rotation, quaternion, ids, uv)
        depth_m = depth_caster.cast(centre, rotation)[0].numpy() if depth_caster else None
        return record, image, depth_m

    records: list[FrameRecord] = []
    pending: deque[Future[None]] = deque()
    progress = tqdm(total=len(poses), desc="rendering", unit="frame", disable=None, leave=False)
    with ThreadPoolExecutor(max_workers=1) as writer:
        for record, image, depth_m in ordered_map(render, poses):
            pending.append(writer.submit(write_frame_files, out, format, record, image, depth_m))
            while len(pending) > 8:  # bound the images waiting in memory
                pending.popleft().result()
            records.append(record)
            progress.update()
        for job in pending:
            job.result()
    progress.close()
    return records


def _render(out: Path, preset: str, format: str, seed: int, marker: dict) -> SynthReport:
    """Render and write everything into the prepared folder `out`; the marker goes last."""
    start = time.perf_counter()
    p = PRESETS[preset]
    camera = p.camera
    room = build_room(seed, p.texel)
    points, _, colours = sample_points(room, p.points, seed)
    records = _render_frames(out, format, p, room, points, seed)
    write_metadata(out, format, records, camera, points, colours)
    train = [r for r in records if r.split == "train"]
    test = [r for r in records if r.split == "test"]
    diff = difficulty(
        np.stack([r.centre for r in train]),
        np.stack([r.quaternion for r in train]),
        np.stack([r.centre for r in test]),
        np.stack([r.quaternion for r in test]),
    )
    frames = {"train": len(train), "test": len(test)}
    cam = {
        "width": camera.width,
        "height": camera.height,
        "focal": camera.focal,
        "hfov_deg": round(float(np.degrees(2 * np.arctan(camera.cx / camera.focal))), 3),
    }
    atomic_write_text(
        out / "difficulty.json",
        json.dumps(
            {
                **diff,
                "test_frames": len(test),
                "train_frames": len(train),
                "nearest": f"argmin of position_m + angle_deg / {ANGLE_PER_METRE:g}",
            },
            indent=2,
        )
        + "\n",
    )
    atomic_write_text(
        out / MARKER,
        json.dumps(
            {**marker, "frames": frames, "difficulty": diff, "camera": cam, "points": len(points)},
            indent=2,
        )
        + "\n",
    )
    (out / PARTIAL).unlink()
    return SynthReport(
        out, preset, format, seed, frames, diff, cam, seconds=time.perf_counter() - start
    )
