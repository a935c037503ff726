"""The same poses written by hand in the three formats load into the same Scene (within 1e-6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image
from scipy.spatial.transform import Rotation

from geoposenet.readers import check_dataset, detect_format, load_scene
from geoposenet.scene import Scene

SPLITS = {"train": 4, "test": 2}  # frames per split; sequence 1 is train, 2 is test


def _poses(seed: int) -> dict[str, list[tuple[np.ndarray, Rotation]]]:
    """Per split, (camera centre, world -> camera rotation) pairs."""
    rng = np.random.default_rng(seed)
    return {
        split: [
            (rng.normal(size=3) * 10, Rotation.random(random_state=int(rng.integers(1 << 30))))
            for _ in range(count)
        ]
        for split, count in SPLITS.items()
    }


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 6), (40, 80, 120)).save(path)


def _write_cambridge(root: Path, poses: dict) -> None:
    for seq, (split, frames) in enumerate(poses.items(), start=1):
        lines = ["Visual Landmark Dataset V1", "ImageFile, Camera Position [X Y Z W P Q R]", ""]
        for k, (centre, rotation) in enumerate(frames):
            name = f"seq{seq}/frame{k:05d}.png"
            values = [*centre, *rotation.as_quat(scalar_first=True)]
            lines.append(" ".join([name, *(repr(float(v)) for v in values)]))
            _png(root / name)
        (root / f"dataset_{split}.txt").write_text("\n".join(lines) + "\n")


def _write_sevenscenes(root: Path, poses: dict) -> None:
    for seq, (split, frames) in enumerate(poses.items(), start=1):
        name = {"train": "TrainSplit.txt", "test": "TestSplit.txt"}[split]
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(f"sequence{seq}\r\n".encode())
        for k, (centre, rotation) in enumerate(frames):
            world_from_camera = np.eye(4)
            world_from_camera[:3, :3] = rotation.as_matrix().T
            world_from_camera[:3, 3] = centre
            rows = ["\t".join(f"{v: .17e}" for v in row) + "\t" for row in world_from_camera]
            stem = root / f"seq-{seq:02d}" / f"frame-{k:06d}"
            _png(stem.with_name(stem.name + ".color.png"))
            stem.with_name(stem.name + ".pose.txt").write_bytes("\r\n".join(rows).encode())


def _write_colmap(root: Path, poses: dict) -> None:
    reconstruction = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "PINHOLE", 10.0, 8, 6)
    reconstruction.add_camera_with_trivial_rig(camera)
    image_id = 0
    for seq, (split, frames) in enumerate(poses.items(), start=1):
        names = []
        for k, (centre, rotation) in enumerate(frames):
            image_id += 1
            name = f"seq{seq}/frame{k:05d}.png"
            t = -rotation.as_matrix() @ centre
            pose = pycolmap.Rigid3d(pycolmap.Rotation3d(rotation.as_quat()), t)
            image = pycolmap.Image(name=name, camera_id=1, image_id=image_id)
            reconstruction.add_image_with_trivial_frame(image, pose)
            _png(root / "images" / name)
            names.append(name)
        (root / f"{split}.txt").write_text("\n".join(names) + "\n")
    (root / "sparse" / "0").mkdir(parents=True)
    reconstruction.write_binary(str(root / "sparse" / "0"))


def _same(a: Scene, b: Scene) -> None:
    for split in SPLITS:
        fa, fb = a.split(split), b.split(split)
        assert len(fa) == len(fb) == SPLITS[split]
        assert np.allclose([f.centre for f in fa], [f.centre for f in fb], rtol=0, atol=1e-6)
        qa, qb = np.array([f.quaternion for f in fa]), np.array([f.quaternion for f in fb])
        assert np.allclose(qa, qb, rtol=0, atol=1e-6)
        assert len({f.sequence for f in fa}) == len({f.sequence for f in fb}) == 1
    assert np.allclose(a.train_centre(), b.train_centre(), rtol=0, atol=1e-6)


def test_three_formats_give_the_same_scene(tmp_path: Path) -> None:
    poses = _poses(seed=11)
    writers = {
        "cambridge": _write_cambridge,
        "7scenes": _write_sevenscenes,
        "colmap": _write_colmap,
    }
    scenes = {}
    for name, write in writers.items():
        write(tmp_path / name, poses)
        assert detect_format(tmp_path / name) == name
        assert check_dataset(tmp_path / name).ok
        scenes[name] = load_scene(tmp_path / name)
    expected_centres = [c for frames in poses.values() for c, _ in frames]
    cambridge = scenes["cambridge"]
    assert np.allclose(cambridge.centres, expected_centres, rtol=0, atol=1e-12)
    _same(cambridge, scenes["7scenes"])
    _same(cambridge, scenes["colmap"])
