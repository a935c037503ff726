"""`geoposenet augment` on COLMAP and nerfstudio datasets (the tiny room written in each): the
synthesised views are new images of the model / frames of transforms.json, in train, marked
synthetic; the test split is DATA's also when it is implicit; DATA's files are unchanged; the
poses in the files (read with pycolmap, or the JSON) are the rendered ones, in DATA's units."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pycolmap
import pytest
from PIL import Image

from geoposenet.cli import main
from geoposenet.errors import DatasetError
from geoposenet.geometry import quaternion_to_matrix_np
from geoposenet.images import decode_image
from geoposenet.readers import check_dataset, load_scene
from geoposenet.scene import Scene
from geoposenet.synthetic import synthesize
from geoposenet.viewsynth.cameras import SceneCameras
from geoposenet.viewsynth.exact import ExactRenderer
from geoposenet.viewsynth.rotation import RotationRenderer
from geoposenet.viewsynth.views import View

VIEWS = 6
OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0])


@pytest.fixture(scope="module")
def rooms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny room as a COLMAP model (binary, train.txt/test.txt) and a nerfstudio capture
    (train_filenames/test_filenames), rendered once; tests copy them."""
    base = tmp_path_factory.mktemp("rooms")
    return {
        fmt: synthesize(base / fmt, preset="tiny", format=fmt, seed=0).root
        for fmt in ("colmap", "nerfstudio")
    }


def copy(rooms: dict[str, Path], fmt: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(rooms[fmt], tmp_path / f"data-{fmt}"))


def augment_cli(data: Path, out: Path, *flags: str) -> int:
    return main(["augment", str(data), "--out", str(out), "--no-progress", "--views", str(VIEWS),
                 *flags])  # fmt: skip


def hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file below `root`, by relative path."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def written_poses(aug: Path, fmt: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Frame name -> (centre (3,), cam_from_world (3, 3)) as AUG's files state them, in the
    files' units: pycolmap's cam_from_world, or transforms.json's OpenGL camera-to-world."""
    if fmt == "colmap":
        recon = pycolmap.Reconstruction(str(aug / "sparse" / "0"))
        poses = {}
        for image in recon.images.values():
            pose = image.cam_from_world()
            rotation = np.asarray(pose.rotation.matrix())
            poses[image.name] = (-rotation.T @ np.asarray(pose.translation), rotation)
        return poses
    content = json.loads((aug / "transforms.json").read_text())
    return {
        item["file_path"]: (
            np.array(item["transform_matrix"])[:3, 3],
            (np.array(item["transform_matrix"])[:3, :3] @ OPENGL_TO_OPENCV).T,
        )
        for item in content["frames"]
    }


def image_path(aug: Path, fmt: str, name: str) -> Path:
    return aug / "images" / name if fmt == "colmap" else aug / name


def assert_images_match_written_poses(data: Path, aug: Path, fmt: str, renderer: str) -> None:
    """Render each synthesised view again from its source in DATA (read without a scale: the
    files' units) at the pose AUG's files state: the written image comes back (rotation:
    within 1 level of resampling; exact: within the room's sensor noise, a fresh draw)."""
    marker = json.loads((aug / "augment.json").read_text())
    scene = load_scene(data)
    train = scene.split("train")
    index = {frame.name: k for k, frame in enumerate(train)}
    cameras = SceneCameras(scene)
    render = ExactRenderer(data, train) if renderer == "exact" else RotationRenderer(train, cameras)
    poses = written_poses(aug, fmt)
    for entry in marker["frames"]:
        centre, rotation = poses[entry["name"]]
        source = index[entry["source"]]
        if renderer == "rotation":  # a rotation keeps its source camera's centre
            assert np.allclose(centre, train[source].centre, atol=1e-9)
        camera = cameras.colour(train[source])
        want = render.render(View(centre, rotation, source), camera).image.astype(float)
        got = decode_image(image_path(aug, fmt, entry["name"])).permute(1, 2, 0).numpy()
        diff = np.abs(got - want)
        if renderer == "rotation":
            assert diff.max() <= 1, entry
        else:
            assert diff.mean() < 5, (entry, diff.mean())  # measured 2.9; 5 cm off: 11 to 30


def assert_test_split_is_datas(original: Scene, augmented: Scene) -> None:
    before, after = original.split("test"), augmented.split("test")
    assert [f.name for f in after] == [f.name for f in before] and before
    for a, b in zip(before, after, strict=True):
        assert np.allclose(a.centre, b.centre, atol=1e-12)
        assert np.allclose(a.quaternion, b.quaternion, atol=1e-12)


@pytest.mark.parametrize("renderer", ["rotation", "auto"])
@pytest.mark.parametrize("fmt", ["colmap", "nerfstudio"])
def test_augment_writes_the_format_with_datas_test_split(
    fmt: str, renderer: str, rooms: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    data, aug = copy(rooms, fmt, tmp_path), tmp_path / "aug"
    before = hashes(data)
    assert augment_cli(data, aug, "--renderer", renderer) == 0
    kind = "exact" if renderer == "auto" else renderer  # auto: the room's own caster
    assert f"{kind} renderer" in capsys.readouterr().out
    assert hashes(data) == before  # DATA byte-identical, nothing added
    report = check_dataset(aug)
    assert report.ok, report.describe()
    original, augmented = load_scene(data), load_scene(aug)
    synthetic = [f for f in augmented.frames if f.synthetic]
    assert len(synthetic) == VIEWS and {f.sequence for f in synthetic} == {"synthetic-1"}
    assert all(f.split == "train" for f in synthetic)
    assert len(augmented.split("train")) == len(original.split("train")) + VIEWS
    assert_test_split_is_datas(original, augmented)
    assert all(f.point_ids.size > 0 for f in synthetic)  # they see 3D points
    poses = written_poses(aug, fmt)
    for frame in augmented.frames:  # the reader reads what the files say
        centre, rotation = poses[frame.name]
        assert np.allclose(frame.centre, centre, atol=1e-9)
        assert np.allclose(quaternion_to_matrix_np(frame.quaternion), rotation, atol=1e-9)
    assert_images_match_written_poses(data, aug, fmt, kind)
    if fmt == "colmap":
        assert (aug / "train.txt").read_text().count("synthetic-1/") == VIEWS
        assert (aug / "test.txt").read_bytes() == (data / "test.txt").read_bytes()
        assert_colmap_observations(aug, [f.name for f in synthetic])
        assert not list(aug.glob(".augment*"))
    else:
        content = json.loads((aug / "transforms.json").read_text())
        assert sum("synthetic-1/" in n for n in content["train_filenames"]) == VIEWS
        assert not any("synthetic" in n for n in content["test_filenames"])


def assert_colmap_observations(aug: Path, names: list[str]) -> None:
    """pycolmap: each synthesised image observes 3D points whose tracks name it, at the
    pixels where its camera and pose project them (keypoints centred at +0.5, as COLMAP's)."""
    recon = pycolmap.Reconstruction(str(aug / "sparse" / "0"))
    for name in names:
        image = recon.find_image_with_name(name)
        assert image is not None and image.has_pose and image.num_points3D > 0
        k = np.asarray(image.camera.calibration_matrix())
        assert image.camera.model_name == "PINHOLE" and image.camera_id == 1  # the source's
        pose = image.cam_from_world()
        for index, point2d in enumerate(image.points2D):
            point = recon.points3D[point2d.point3D_id]
            assert any(e.image_id == image.image_id and e.point2D_idx == index
                       for e in point.track.elements)  # fmt: skip
            cam = np.asarray(pose.rotation.matrix()) @ point.xyz + np.asarray(pose.translation)
            assert np.allclose((k @ cam)[:2] / cam[2], point2d.xy, atol=1e-6)


def make_implicit(data: Path, fmt: str) -> None:
    """Drop DATA's own split (train.txt/test.txt; train_filenames/test_filenames): the readers'
    held-out stretches (the last sequence by name, seq3) decide."""
    if fmt == "colmap":
        for name in ("train.txt", "test.txt"):
            (data / name).unlink()
    else:
        path = data / "transforms.json"
        content = json.loads(path.read_text())
        del content["train_filenames"], content["test_filenames"]
        path.write_text(json.dumps(content))


@pytest.mark.parametrize(
    ("fmt", "flags"),
    [("colmap", ()), ("nerfstudio", ()), ("colmap", ("--test-every", "4")),
     ("nerfstudio", ("--test-list", "LIST"))],
)  # fmt: skip
def test_an_implicit_split_stays_datas(
    fmt: str, flags: tuple[str, ...], rooms: dict[str, Path], tmp_path: Path
) -> None:
    """Without split lists, or with --test-every / --test-list, the readers split the captured
    images only: AUG's test frames are DATA's (a name-based rule over all images would make
    'synthetic-1', after 'seq3', the held-out sequence, or shift --test-every)."""
    data, aug = copy(rooms, fmt, tmp_path), tmp_path / "aug"
    make_implicit(data, fmt)
    if "LIST" in flags:
        names = [f.name for f in load_scene(data).frames if f.name.endswith(("3.png", "7.png"))]
        (tmp_path / "test.txt").write_text("\n".join(names) + "\n")
        flags = ("--test-list", str(tmp_path / "test.txt"))
    options = {"test_every": 4} if "--test-every" in flags else {}
    options |= {"test_list": tmp_path / "test.txt"} if "--test-list" in flags else {}
    assert augment_cli(data, aug, "--renderer", "rotation", *flags) == 0
    assert check_dataset(aug, **options).ok
    original, augmented = load_scene(data, **options), load_scene(aug, **options)
    assert_test_split_is_datas(original, augmented)
    synthetic = [f for f in augmented.frames if f.synthetic]
    assert len(synthetic) == VIEWS and all(f.split == "train" for f in synthetic)
    if not flags:  # the default rule: the whole last captured sequence is held out
        assert {f.sequence for f in augmented.split("test")} == {"seq3"}


def test_a_text_model_with_a_distorted_camera(rooms: dict[str, Path], tmp_path: Path) -> None:
    """DATA's model as text with a SIMPLE_RADIAL camera: AUG's model is text again, and the
    synthesised images get a new PINHOLE camera with the intrinsics they were rendered with."""
    data, aug = copy(rooms, "colmap", tmp_path), tmp_path / "aug"
    model = data / "sparse" / "0"
    recon = pycolmap.Reconstruction(str(model))
    f, cx, cy = recon.cameras[1].params[[0, 2, 3]]
    recon.cameras[1] = pycolmap.Camera(model="SIMPLE_RADIAL", width=80, height=60,
                                       params=[f, cx, cy, 0.01], camera_id=1)  # fmt: skip
    for path in model.iterdir():
        path.unlink()
    recon.write_text(str(model))
    before = hashes(data)
    assert augment_cli(data, aug, "--renderer", "rotation") == 0
    assert hashes(data) == before
    assert sorted(p.suffix for p in (aug / "sparse" / "0").iterdir()) == [".txt"] * 5
    assert check_dataset(aug).ok
    recon = pycolmap.Reconstruction(str(aug / "sparse" / "0"))
    new = [image for image in recon.images.values() if image.name.startswith("synthetic-1/")]
    assert len(new) == VIEWS and {image.camera_id for image in new} == {2}
    assert recon.cameras[2].model_name == "PINHOLE"
    assert np.allclose(recon.cameras[2].params, [f, f, cx, cy])
    assert_test_split_is_datas(load_scene(data), load_scene(aug))


@pytest.mark.parametrize(
    ("fmt", "renderer", "option"),
    [("colmap", "auto", "scale"), ("nerfstudio", "rotation", "scale_from")],
)
def test_scale_round_trip(
    fmt: str, renderer: str, option: str, rooms: dict[str, Path], tmp_path: Path
) -> None:
    """DATA read with --scale 2 (or --scale-from a distance twice the model's) is in metres; the
    new poses are written in DATA's units, so AUG read with the same flag has them in metres,
    and the images match the written poses."""
    data, aug = copy(rooms, fmt, tmp_path), tmp_path / "aug"
    options: dict[str, Any] = {"scale": 2.0}
    if option == "scale_from":
        a, b = load_scene(data).frames[0], load_scene(data).frames[-1]
        distance = 2.0 * float(np.linalg.norm(a.centre - b.centre))
        (tmp_path / "scale.txt").write_text(f"{a.name} {b.name} {distance!r}\n")
        options = {"scale_from": str(tmp_path / "scale.txt")}
    flag = [f"--{option.replace('_', '-')}", str(options[option])]
    # the room twice as large: its walks are more than --max-gap apart, no views between them
    assert augment_cli(data, aug, "--renderer", renderer, *flag, "--between", "0") == 0
    assert json.loads((aug / "augment.json").read_text())["dataset_options"] == options
    assert check_dataset(aug, **options).ok
    original = load_scene(data, **options)
    augmented = load_scene(aug, **options)
    assert augmented.position_unit == "m"
    assert_test_split_is_datas(original, augmented)
    poses = written_poses(aug, fmt)
    synthetic = [f for f in augmented.frames if f.synthetic]
    assert len(synthetic) == VIEWS
    for frame in synthetic:
        assert np.allclose(frame.centre, 2.0 * poses[frame.name][0], atol=1e-9)
    # in metres, the new cameras are within the sampler's reach of a training camera
    train = np.array([f.centre for f in original.split("train")])
    gaps = [np.linalg.norm(train - f.centre, axis=1).min() for f in synthetic]
    assert max(gaps) < 1.5  # --max-shift 0.5 m, or between two walks at most 2 m apart
    assert_images_match_written_poses(data, aug, fmt, "exact" if renderer == "auto" else renderer)


def test_an_image_folder_inside_data_and_one_outside(
    rooms: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--images inside DATA: COLMAP's `photos` folder, nerfstudio's half-size `images_2`; the
    synthesised images go to AUG's copy of it (at its size) and the same flag reads AUG. A
    folder outside DATA is refused (the synthesised images could not go beside the others)."""
    colmap, nerfstudio = copy(rooms, "colmap", tmp_path), copy(rooms, "nerfstudio", tmp_path)
    shutil.move(colmap / "images", colmap / "photos")
    for image in (nerfstudio / "images").rglob("*.png"):  # nerfstudio's images_2: half size
        target = nerfstudio / "images_2" / image.relative_to(nerfstudio / "images")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image) as full:
            full.resize((full.width // 2, full.height // 2)).save(target)
    for data, folder, size in ((colmap, "photos", (80, 60)), (nerfstudio, "images_2", (40, 30))):
        aug = tmp_path / f"aug-{folder}"
        assert augment_cli(data, aug, "--renderer", "rotation", "--images", folder) == 0
        with Image.open(aug / folder / "synthetic-1" / "frame00001.png") as written:
            assert written.size == size
        assert check_dataset(aug, images=folder).ok
        assert_test_split_is_datas(load_scene(data, images=folder), load_scene(aug, images=folder))
    shutil.move(colmap / "photos", tmp_path / "outside")
    for images in (str(tmp_path / "outside"), "../outside"):
        flags = ("--renderer", "rotation", "--images", images)
        assert augment_cli(colmap, tmp_path / "refused", *flags) == 2
        assert "must be a folder inside" in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()


def test_synthesised_images_are_never_test_images(rooms: dict[str, Path], tmp_path: Path) -> None:
    """A split list that makes a synthesised image a test image is a problem (the file and
    augment.json disagree): COLMAP's test.txt, --test-list, nerfstudio's test_filenames."""
    for fmt in ("colmap", "nerfstudio"):
        data, aug = copy(rooms, fmt, tmp_path / fmt), tmp_path / fmt / "aug"
        assert augment_cli(data, aug, "--renderer", "rotation") == 0
        name = next(f.name for f in load_scene(aug).frames if f.synthetic)
        listing = tmp_path / fmt / "list.txt"
        listing.write_text(name + "\n")
        with pytest.raises(DatasetError, match="synthesised"):
            load_scene(aug, test_list=listing)
        if fmt == "colmap":  # new files: AUG's test.txt is a hard link to DATA's
            for split in ("train", "test"):
                names = (aug / f"{split}.txt").read_text().splitlines()
                names = [n for n in names if n != name] + ([name] if split == "test" else [])
                (aug / f"{split}.txt").unlink()
                (aug / f"{split}.txt").write_text("\n".join(names) + "\n")
        else:
            content = json.loads((aug / "transforms.json").read_text())
            content["train_filenames"].remove(name)
            content["test_filenames"].append(name)
            (aug / "transforms.json").write_text(json.dumps(content))
        with pytest.raises(DatasetError, match="never a test"):
            load_scene(aug)


def test_nerfstudio_frames_keep_their_own_intrinsics(
    rooms: dict[str, Path], tmp_path: Path
) -> None:
    """Frames with their own intrinsics keys (a multi-camera capture): each synthesised frame
    gets its source frame's."""
    data, aug = copy(rooms, "nerfstudio", tmp_path), tmp_path / "aug"
    path = data / "transforms.json"
    content = json.loads(path.read_text())
    camera = {key: content.pop(key) for key in ("camera_model", "fl_x", "fl_y", "cx", "cy")}
    for k, item in enumerate(content["frames"]):
        item |= camera | {"cx": camera["cx"] + k % 3 * 0.5, "k1": 0.0}
    path.write_text(json.dumps(content))
    assert augment_cli(data, aug, "--renderer", "rotation") == 0
    assert check_dataset(aug).ok
    items = {
        item["file_path"]: item
        for item in json.loads((aug / "transforms.json").read_text())["frames"]
    }
    scene = load_scene(aug)
    for entry in json.loads((aug / "augment.json").read_text())["frames"]:
        own, source = items[entry["name"]], items[entry["source"]]
        keys = ("camera_model", "fl_x", "fl_y", "cx", "cy", "k1")
        assert {key: own[key] for key in keys} == {key: source[key] for key in keys}
        frame = next(f for f in scene.frames if f.name == entry["name"])
        assert frame.intrinsics is not None and frame.intrinsics.cx == source["cx"]
