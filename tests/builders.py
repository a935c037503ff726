"""Small valid datasets built by hand in a temporary folder, one per format, for the tests that
corrupt one thing in them (test_readers_errors, test_bad_inputs). Import as `import builders`
(pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image

# Real dataset files (excerpts, see data/SOURCES): the one place tests find them. Nothing outside
# the repository is ever read.
REALDATA = Path(__file__).resolve().parent / "data"
STAIRS = REALDATA / "7scenes" / "stairs"
HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
TRAIN = ["seq1/frame00001.png 1 2 3 1 0 0 0", "seq1/frame00002.png 4 5 6 0 1 0 0"]
TEST = ["seq2/frame00001.png 7 8 9 0 0 1 0"]
NVM_CAMERA = "seq1/frame00001.jpg\t500 1 0 0 0 1 2 3 0 0"
# The cameras (lines 4-6) and points (lines 8-9) of a valid NVM over the Cambridge builder's frames,
# named .jpg as in the real files: 3 cameras, one per frame; 2 points seen by the first two.
NVM_CAMERAS = [
    "seq1/frame00001.jpg\t500 1 0 0 0 1 2 3 0 0",
    "seq1/frame00002.jpg\t500 0 1 0 0 4 5 6 0 0",
    "seq2/frame00001.jpg\t500 0 0 1 0 7 8 9 0 0",
]
NVM_POINTS = ["0 0 5 255 0 0 2 0 0 1 2 1 0 3 4", "1 1 6 0 255 0 2 0 1 5 6 1 1 7 8"]


def nvm(cameras: list[str] = NVM_CAMERAS, points: list[str] = NVM_POINTS) -> str:
    """NVM_V3 text of one model with these camera and point lines."""
    return "\n".join(["NVM_V3", "", str(len(cameras)), *cameras, str(len(points)), *points]) + "\n"


NVM = nvm()


def cambridge(
    root: Path,
    train: list[str] = TRAIN,
    test: list[str] = TEST,
    size: tuple[int, int] = (8, 6),
    nvm: str | None = None,
) -> Path:
    """A Cambridge Landmarks folder: the two label files with `train`/`test` lines, a (width,
    height) = `size` image for each frame of TRAIN + TEST, and reconstruction.nvm if `nvm`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_train.txt").write_text(HEADER + "\n".join(train) + "\n")
    (root / "dataset_test.txt").write_text(HEADER + "\n".join(test) + "\n")
    for line in TRAIN + TEST:
        path = root / line.split()[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 120, 150)).save(path)
    if nvm is not None:
        (root / "reconstruction.nvm").write_text(nvm)
    return root


def stairs(root: Path) -> Path:
    """A copy of the real 7-Scenes excerpt (6 sequences of 3 frames, 640x480, depth in 4)."""
    shutil.copytree(STAIRS, root)
    return root


def colmap_model(root: Path) -> pycolmap.Reconstruction:
    """A 3-image COLMAP reconstruction (64x48 pinhole camera, identity poses, no points);
    creates root/sparse for the caller to write it into."""
    reconstruction = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 100.0, 64, 48)
    reconstruction.add_camera_with_trivial_rig(camera)
    pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.array([0.0, 0.0, 0.0, 1.0])), np.zeros(3))
    for i in range(3):
        image = pycolmap.Image(name=f"im{i}.png", camera_id=1, image_id=i + 1)
        reconstruction.add_image_with_trivial_frame(image, pose)
    (root / "sparse").mkdir(parents=True)
    return reconstruction


def colmap(root: Path, binary: bool = False) -> Path:
    """A complete COLMAP dataset: `colmap_model` written (text or binary) plus its images."""
    reconstruction = colmap_model(root)
    if binary:
        reconstruction.write_binary(str(root / "sparse"))
    else:
        reconstruction.write_text(str(root / "sparse"))
    (root / "images").mkdir()
    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 80, 120)).save(root / "images" / f"im{i}.png")
    return root


# A nerfstudio capture: 3 frames looking along -z (OpenGL) at x = 0, 1, 2, one shared PINHOLE
# camera, explicit splits and an ASCII PLY of 3 points in front of the cameras.
NERFSTUDIO_POINTS = ["0 0 -2 255 0 0", "1 0.5 -4 0 255 0", "2 -0.5 -6 0 0 255"]


def nerfstudio_transforms() -> dict:
    """The transforms.json content of `nerfstudio`."""
    frames = [
        {"file_path": f"images/im{i}.png",
         "transform_matrix": [[1, 0, 0, i], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}
        for i in range(3)
    ]  # fmt: skip
    return {
        "camera_model": "PINHOLE", "fl_x": 60.0, "fl_y": 60.0, "cx": 32.0, "cy": 24.0,
        "w": 64, "h": 48, "frames": frames, "ply_file_path": "points.ply",
        "train_filenames": ["images/im0.png", "images/im1.png"],
        "test_filenames": ["images/im2.png"],
    }  # fmt: skip


def ply_ascii(rows: list[str]) -> str:
    """An ASCII PLY with x y z (float) and r g b (uchar) vertices, one per row."""
    header = [
        "ply", "format ascii 1.0", "comment made by a test", f"element vertex {len(rows)}",
        "property float x", "property float y", "property float z", "property uchar red",
        "property uchar green", "property uchar blue", "end_header",
    ]  # fmt: skip
    return "\n".join(header + rows) + "\n"


def nerfstudio(root: Path, transforms: dict | None = None) -> Path:
    """A nerfstudio capture folder: transforms.json, its 64x48 images and points.ply."""
    (root / "images").mkdir(parents=True)
    content = nerfstudio_transforms() if transforms is None else transforms
    (root / "transforms.json").write_text(json.dumps(content, indent=2))
    for i in range(3):
        Image.new("RGB", (64, 48), (40 * i, 80, 120)).save(root / "images" / f"im{i}.png")
    (root / "points.ply").write_text(ply_ascii(NERFSTUDIO_POINTS))
    return root
