"""Writers of the rendered scene in the four on-disk formats the readers understand.

Conventions: quaternions (w, x, y, z) = world -> camera rotation, canonical w >= 0; camera centre c
in world metres. Sequences are numbered from 1 (cambridge/colmap `seqN`, 7-Scenes `seq-0N`),
frames from 1 (cambridge/colmap `frame00001`) or 0 (7-Scenes `frame-000000`), like the real sets.
- cambridge: seqN/frame00001.png, dataset_{train,test}.txt (3 header lines, then
  `name X Y Z W P Q R`), reconstruction.nvm (NVM_V3, image names with .jpg as in the real files,
  measurements relative to the image centre in pixels).
- 7scenes: seq-01/frame-000000.{color.png, depth.png, pose.txt}; depth is z in uint16 mm rendered by
  a 640x480 camera with f = 585 and principal point (320, 240) (pixel index = coordinate), the
  intrinsics the 7-Scenes reader assumes; the colour camera has the same field of view (f = 585 *
  width / 640). pose.txt is the camera-to-world 4x4. TrainSplit.txt / TestSplit.txt list
  `sequenceN`.
- colmap: images/seqN/frame00001.png, sparse/0 (pycolmap binary model: one PINHOLE camera, one
  trivial rig and frame per image, observations as points2D), train.txt / test.txt with image names.
- nerfstudio: images/seqN/frame00001.png, transforms.json (shared PINHOLE intrinsics, per frame
  the camera-to-world 4x4 in the OpenGL convention: camera x right, y up, looking along -z;
  train_filenames / test_filenames) and sparse_pc.ply (binary little endian x y z as doubles and
  r g b, the points some frame sees).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from geoposenet.synthetic.render import Camera

FORMATS = ("cambridge", "7scenes", "colmap", "nerfstudio")
OPENGL_FROM_OPENCV = np.diag([1.0, -1.0, -1.0])  # camera axes: flips y and z
# 7-Scenes depth camera: f = 585 and principal point (320, 240) with pixel indices as coordinates
# (the readers back-project pixel (row i, col j) at u = j), i.e. (320.5, 240.5) in ours.
DEPTH_CAMERA = Camera(640, 480, 585.0, principal=(320.5, 240.5))
CAMBRIDGE_HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"


@dataclass
class FrameRecord:
    """One rendered frame: sequence number (1-based), index in the sequence (0-based), split,
    centre (3,), rotation (3, 3) world -> camera, quaternion (4,) wxyz canonical, visible point ids
    (k,) and their pixel coordinates uv (k, 2) (pixel centres at +0.5)."""

    sequence: int
    index: int
    split: str
    centre: np.ndarray
    rotation: np.ndarray
    quaternion: np.ndarray
    point_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def sequence_name(fmt: str, sequence: int) -> str:
    """Folder name of a sequence in format `fmt`."""
    return f"seq-{sequence:02d}" if fmt == "7scenes" else f"seq{sequence}"


def image_name(fmt: str, record: FrameRecord) -> str:
    """Path of the colour image relative to the dataset root, '/'-separated."""
    seq = sequence_name(fmt, record.sequence)
    if fmt == "7scenes":
        return f"{seq}/frame-{record.index:06d}.color.png"
    name = f"{seq}/frame{record.index + 1:05d}.png"
    return f"images/{name}" if fmt in ("colmap", "nerfstudio") else name


def write_png(path: Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) or uint16 (H, W) array as PNG (deterministic bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def write_frame_files(
    root: Path, fmt: str, record: FrameRecord, image: np.ndarray, depth_m: np.ndarray | None
) -> None:
    """Write one frame's image (and for 7scenes its depth (480, 640) in metres and pose.txt)."""
    write_png(root / image_name(fmt, record), image)
    if fmt != "7scenes":
        return
    assert depth_m is not None
    stem = root / image_name(fmt, record).removesuffix(".color.png")
    depth_mm = np.round(depth_m * 1000.0)
    depth_mm = np.where(np.isfinite(depth_mm) & (depth_mm < 65535), depth_mm, 65535)
    write_png(stem.with_name(stem.name + ".depth.png"), depth_mm.astype(np.uint16))
    world_from_cam = np.eye(4)
    world_from_cam[:3, :3] = record.rotation.T
    world_from_cam[:3, 3] = record.centre
    lines = ["\t".join(f"{v:.12e}" for v in row) for row in world_from_cam]
    stem.with_name(stem.name + ".pose.txt").write_text("\n".join(lines) + "\n")


def _pose_text(record: FrameRecord) -> str:
    values = [*record.centre, *record.quaternion]
    return " ".join(f"{v:.12f}" for v in values)


def _write_cambridge(
    root: Path, records: list[FrameRecord], camera: Camera, points: np.ndarray, colours: np.ndarray
) -> None:
    for split in ("train", "test"):
        lines = [
            f"{image_name('cambridge', r)} {_pose_text(r)}" for r in records if r.split == split
        ]
        (root / f"dataset_{split}.txt").write_text(CAMBRIDGE_HEADER + "\n".join(lines) + "\n")
    out = ["NVM_V3", "", str(len(records))]
    for r in records:
        name = image_name("cambridge", r).removesuffix(".png") + ".jpg"
        out.append(
            f"{name} {camera.focal:.6f} "
            + " ".join(f"{v:.12f}" for v in [*r.quaternion, *r.centre])
            + " 0 0"
        )
    tracks: list[list[str]] = [[] for _ in range(len(points))]
    for cam_index, r in enumerate(records):
        for feat, (pid, (u, v)) in enumerate(zip(r.point_ids, r.uv, strict=True)):
            tracks[pid].append(f"{cam_index} {feat} {u - camera.cx:.4f} {v - camera.cy:.4f}")
    out += ["", str(len(points))]
    for p, c, track in zip(points, colours, tracks, strict=True):
        out.append(
            " ".join(f"{v:.9f}" for v in p)
            + f" {c[0]} {c[1]} {c[2]} {len(track)}"
            + "".join(" " + t for t in track)
        )
    out += ["", "0", ""]
    (root / "reconstruction.nvm").write_text("\n".join(out))


def _write_sevenscenes(root: Path, records: list[FrameRecord]) -> None:
    for split, name in (("train", "TrainSplit.txt"), ("test", "TestSplit.txt")):
        seqs = sorted({r.sequence for r in records if r.split == split})
        (root / name).write_text("".join(f"sequence{s}\n" for s in seqs))


def _write_colmap(
    root: Path, records: list[FrameRecord], camera: Camera, points: np.ndarray, colours: np.ndarray
) -> None:
    import pycolmap  # the `colmap` extra, needed by this format only

    recon = pycolmap.Reconstruction()
    recon.add_camera_with_trivial_rig(
        pycolmap.Camera(
            model="PINHOLE",
            width=camera.width,
            height=camera.height,
            params=[camera.focal, camera.focal, camera.cx, camera.cy],
            camera_id=1,
        )
    )
    tracks: list[list[tuple[int, int]]] = [[] for _ in range(len(points))]
    for image_id, r in enumerate(records, start=1):
        w, x, y, z = r.quaternion
        cam_from_world = pycolmap.Rigid3d(
            pycolmap.Rotation3d(np.array([x, y, z, w])), -r.rotation @ r.centre
        )  # Eigen xyzw
        image = pycolmap.Image(
            name=image_name("colmap", r).removeprefix("images/"),
            keypoints=np.asarray(r.uv, np.float64).reshape(-1, 2),
            camera_id=1,
            image_id=image_id,
        )
        recon.add_image_with_trivial_frame(image, cam_from_world)
        for feat, pid in enumerate(r.point_ids):
            tracks[pid].append((image_id, feat))
    for p, c, track in zip(points, colours, tracks, strict=True):
        if not track:
            continue
        t = pycolmap.Track()
        for image_id, feat in track:
            t.add_element(image_id, feat)
        recon.add_point3D(np.asarray(p, np.float64), t, np.asarray(c, np.uint8))
    sparse = root / "sparse" / "0"
    sparse.mkdir(parents=True, exist_ok=True)
    recon.write(str(sparse))
    for split in ("train", "test"):
        names = [
            image_name("colmap", r).removeprefix("images/") for r in records if r.split == split
        ]
        (root / f"{split}.txt").write_text("".join(n + "\n" for n in names))


def _write_nerfstudio(
    root: Path, records: list[FrameRecord], camera: Camera, points: np.ndarray, colours: np.ndarray
) -> None:
    frames = []
    for r in records:
        world_from_camera = np.eye(4)
        world_from_camera[:3, :3] = r.rotation.T @ OPENGL_FROM_OPENCV
        world_from_camera[:3, 3] = r.centre
        frames.append({"file_path": image_name("nerfstudio", r),
                       "transform_matrix": world_from_camera.tolist()})  # fmt: skip
    seen = np.unique(np.concatenate([r.point_ids for r in records])).astype(np.int64)
    content = {
        "camera_model": "PINHOLE",
        "fl_x": camera.focal, "fl_y": camera.focal, "cx": camera.cx, "cy": camera.cy,
        "w": camera.width, "h": camera.height,
        "frames": frames,
        "train_filenames": [image_name("nerfstudio", r) for r in records if r.split == "train"],
        "test_filenames": [image_name("nerfstudio", r) for r in records if r.split == "test"],
        "ply_file_path": "sparse_pc.ply",
    }  # fmt: skip
    (root / "transforms.json").write_text(json.dumps(content, indent=2) + "\n")
    vertex = np.dtype([("x", "<f8"), ("y", "<f8"), ("z", "<f8"),
                       ("red", "u1"), ("green", "u1"), ("blue", "u1")])  # fmt: skip
    table = np.zeros(len(seen), dtype=vertex)
    for k, axis in enumerate("xyz"):
        table[axis] = points[seen, k]
    for k, channel in enumerate(("red", "green", "blue")):
        table[channel] = colours[seen, k]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(seen)}\n"
        "property double x\nproperty double y\nproperty double z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    (root / "sparse_pc.ply").write_bytes(header.encode("ascii") + table.tobytes())


def write_metadata(
    root: Path,
    fmt: str,
    records: list[FrameRecord],
    camera: Camera,
    points: np.ndarray,
    colours: np.ndarray,
) -> None:
    """Write the label/split/model files of format `fmt` (images are already written)."""
    if fmt == "cambridge":
        _write_cambridge(root, records, camera, points, colours)
    elif fmt == "7scenes":
        _write_sevenscenes(root, records)
    elif fmt == "nerfstudio":
        _write_nerfstudio(root, records, camera, points, colours)
    else:
        _write_colmap(root, records, camera, points, colours)
