"""View synthesis: the exact and homography renderers against each other and the training
images, and `geoposenet augment` on the room (both formats) and on a real 7-Scenes excerpt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from builders import STAIRS
from scipy.spatial.transform import Rotation

from geoposenet.cli import main
from geoposenet.images import decode_image
from geoposenet.readers import check_dataset, load_scene
from geoposenet.validation import hold_out
from geoposenet.viewsynth.cameras import SEVENSCENES_DEPTH, SceneCameras
from geoposenet.viewsynth.exact import ExactRenderer, frame_view
from geoposenet.viewsynth.rotation import RotationRenderer
from geoposenet.viewsynth.views import View


@pytest.fixture(scope="module")
def tiny_7scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny room in 7-Scenes format (colour 80x60, depth 640x480)."""
    from geoposenet.synthetic import synthesize

    root = tmp_path_factory.mktemp("tiny7") / "scene"
    synthesize(root, preset="tiny", format="7scenes", seed=0)
    return root


def pixels(path: Path) -> np.ndarray:
    return decode_image(path).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("fmt", ["cambridge", "7scenes"])
def test_exact_renderer_reproduces_every_training_image_bit_for_bit(
    fmt: str, tiny_scene_dir: Path, tiny_7scenes: Path
) -> None:
    root = tiny_scene_dir if fmt == "cambridge" else tiny_7scenes
    scene = load_scene(root)
    train = scene.split("train")
    renderer, cameras = ExactRenderer(root, train), SceneCameras(scene)
    for index, frame in enumerate(train):
        rendered = renderer.render(frame_view(frame, index), cameras.colour(frame))
        assert np.array_equal(rendered.image, pixels(frame.image)), frame.name
        assert rendered.valid.all()


def test_exact_depth_matches_the_written_depth_map(tiny_7scenes: Path) -> None:
    scene = load_scene(tiny_7scenes)
    frame = scene.split("train")[3]
    depth = ExactRenderer(tiny_7scenes, scene.split("train")).render_depth(
        frame_view(frame, 3), SEVENSCENES_DEPTH
    )
    from PIL import Image

    written = np.asarray(Image.open(str(frame.image).replace("color.png", "depth.png")))
    assert np.abs(np.round(depth.depth * 1000) - written).max() <= 1  # millimetres, rounded


def turned(view: View, degrees: float, axis: tuple[float, float, float]) -> View:
    """`view` turned about its centre by `degrees` about the camera-frame `axis`."""
    turn = Rotation.from_rotvec(np.radians(degrees) * np.array(axis) / np.linalg.norm(axis))
    return View(view.centre, turn.as_matrix() @ view.cam_from_world, view.source)


def test_homography_view_matches_the_exact_renderer_on_covered_pixels(
    tiny_scene_dir: Path,
) -> None:
    """A rotation about the camera centre seen by the homography and by the ray caster: the
    covered pixels agree up to sensor noise (two independent draws, std 2.55 levels each) and
    bilinear resampling of the tiny room's 80x60 images (measured: mean 7.9 levels at 5 deg);
    turning the wrong way gives several times that."""
    scene = load_scene(tiny_scene_dir)
    train = scene.split("train")
    cameras = SceneCameras(scene)
    exact, homography = ExactRenderer(tiny_scene_dir, train), RotationRenderer(train, cameras)
    frame = train[5]
    camera = cameras.colour(frame)
    for degrees, axis in ((5, (0.3, 1, 0.1)), (8, (1, 0.2, 0)), (3, (0, 0, 1))):
        view = turned(frame_view(frame, 5), degrees, axis)
        warped, truth = homography.render(view, camera), exact.render(view, camera)
        assert 0.6 < warped.coverage < 1
        diff = np.abs(warped.image.astype(float) - truth.image)[warped.valid].mean()
        wrong = homography.render(turned(frame_view(frame, 5), -degrees, axis), camera)
        wrong_diff = np.abs(wrong.image.astype(float) - truth.image)[wrong.valid].mean()
        assert diff < 10 and wrong_diff > 2 * diff, (degrees, diff, wrong_diff)
    same = homography.render(frame_view(frame, 5), camera)
    assert np.array_equal(same.image, pixels(frame.image)) and same.valid.all()


def test_homography_depth_matches_the_exact_depth(tiny_7scenes: Path) -> None:
    scene = load_scene(tiny_7scenes)
    train = scene.split("train")
    exact, homography = (
        ExactRenderer(tiny_7scenes, train),
        RotationRenderer(train, SceneCameras(scene)),
    )
    view = turned(frame_view(train[2], 2), 6, (0.2, 1, 0))
    warped = homography.render_depth(view, SEVENSCENES_DEPTH)
    truth = exact.render_depth(view, SEVENSCENES_DEPTH)
    assert warped is not None and warped.depth is not None and truth.depth is not None
    error = np.abs(warped.depth - truth.depth)[warped.valid]
    assert np.median(error) < 0.005 and np.percentile(error, 95) < 0.05  # metres, measured 1.6 mm


def test_rotation_renderer_refuses_a_moved_camera(tiny_scene_dir: Path) -> None:
    scene = load_scene(tiny_scene_dir)
    train = scene.split("train")
    view = frame_view(train[0], 0)
    moved = View(view.centre + 0.1, view.cam_from_world, 0)
    with pytest.raises(ValueError, match="about a training camera's centre"):
        RotationRenderer(train, SceneCameras(scene)).render(
            moved, SceneCameras(scene).colour(train[0])
        )


def augment_cli(data: Path, out: Path, *flags: str) -> int:
    return main(["augment", str(data), "--out", str(out), "--no-progress", *flags])


@pytest.mark.parametrize("renderer", ["exact", "rotation", "depth"])
def test_augment_the_room_in_7scenes_format(
    renderer: str, tiny_7scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "aug"
    assert augment_cli(tiny_7scenes, out, "--views", "12", "--renderer", renderer) == 0
    assert f"{renderer} renderer" in capsys.readouterr().out
    report = check_dataset(out)
    assert report.ok, report.describe()
    original, augmented = load_scene(tiny_7scenes), load_scene(out)
    synthetic = [f for f in augmented.frames if f.synthetic]
    assert len(synthetic) == 12 and {f.sequence for f in synthetic} == {"seq-901"}
    assert all(f.split == "train" for f in synthetic)
    assert len(augmented.split("train")) == len(original.split("train")) + 12
    assert [f.name for f in augmented.split("test")] == [f.name for f in original.split("test")]
    for name in ("TestSplit.txt",):
        assert (out / name).read_bytes() == (tiny_7scenes / name).read_bytes()
    assert (tiny_7scenes / "TrainSplit.txt").read_text().count("sequence") == 2  # DATA untouched
    assert all(f.point_ids.size > 0 for f in synthetic)  # depth maps written: points for eq. 7
    marker = json.loads((out / "augment.json").read_text())
    assert marker["renderer"] == renderer and len(marker["frames"]) == 12
    assert not (out / ".augment-partial").exists()
    held, _ = hold_out(augmented, "auto")
    assert not any(f.synthetic and f.split == "val" for f in held.frames)


@pytest.mark.parametrize("renderer", ["auto", "rotation"])
def test_augment_the_room_in_cambridge_format_extends_the_nvm(
    renderer: str, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "aug"
    assert (
        augment_cli(tiny_scene_dir, out, "--views", "10", "--seed", "3", "--renderer", renderer)
        == 0
    )
    assert check_dataset(out).ok, check_dataset(out).describe()
    scene = load_scene(out)
    synthetic = [f for f in scene.frames if f.synthetic]
    assert len(synthetic) == 10 and synthetic[0].name == "synthetic-1/frame00001.png"
    expected = "exact" if renderer == "auto" else renderer
    assert json.loads((out / "augment.json").read_text())["renderer"] == expected
    assert np.median([f.point_ids.size for f in synthetic]) > 10  # visible points in the NVM
    original = load_scene(tiny_scene_dir)
    assert len(scene.points) == len(original.points)


def test_augment_a_real_7scenes_excerpt_with_real_depth(tmp_path: Path) -> None:
    data = tmp_path / "stairs"
    shutil.copytree(STAIRS, data)
    out = tmp_path / "aug"
    # real depth covers ~75% of a frame at its own pose (holes, edges): a looser coverage bound
    flags = ["--renderer", "depth", "--max-shift", "0.1", "--max-angle", "5", "--between", "0"]
    assert augment_cli(data, out, "--views", "4", *flags, "--min-coverage", "0.5") == 0
    assert check_dataset(out).ok
    synthetic = [f for f in load_scene(out).frames if f.synthetic]
    assert len(synthetic) == 4
    image = pixels(synthetic[0].image)
    assert image.shape == (480, 640, 3) and image.std() > 5


def test_augment_refuses_bad_input_and_writes_nothing(
    tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    cases = [
        ((tiny_scene_dir, tmp_path / "a", "--views", "0"), "--views"),
        ((tiny_scene_dir, tmp_path / "b", "--renderer", "depth"), "--renderer depth"),
        ((tiny_scene_dir, tiny_scene_dir / "inside"), "inside the dataset"),
        ((tiny_scene_dir, busy), "not empty"),
        ((tiny_scene_dir, tmp_path / "c", "--max-angle", "-1"), "max_angle_deg"),
        ((tiny_scene_dir, tmp_path / "f", "--max-gap", "-1"), "max_gap_m"),
        ((tiny_scene_dir, tmp_path / "g", "--max-gap-angle", "200"), "max_gap_deg"),
        ((tiny_scene_dir, tmp_path / "h", "--max-gap", "0.001"), "Raise max_gap_m"),
        ((tiny_scene_dir, tmp_path / "i", "--max-gap-angle", "0.001"), "no partner"),
        ((tiny_scene_dir, tmp_path / "e", "--threads", "-1"), "--threads"),
        ((tmp_path / "missing", tmp_path / "d"), "missing"),
    ]
    for (data, out, *flags), expected in cases:
        assert augment_cli(data, out, *flags) == 2
        assert expected in capsys.readouterr().err
        assert not out.exists() or out == busy
    assert (busy / "keep.txt").read_text() == "mine" and len(list(busy.iterdir())) == 1


def test_augment_reuses_a_complete_output_of_the_same_command(
    tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "aug"
    assert augment_cli(tiny_scene_dir, out, "--views", "5") == 0
    first = (out / "augment.json").stat().st_mtime_ns
    capsys.readouterr()
    assert augment_cli(tiny_scene_dir, out, "--views", "5") == 0
    assert "reused" in capsys.readouterr().out
    assert (out / "augment.json").stat().st_mtime_ns == first
    assert augment_cli(tiny_scene_dir, out, "--views", "5", "--seed", "1") == 0  # another request
    assert json.loads((out / "augment.json").read_text())["seed"] == 1
    (out / ".augment-partial").write_text("interrupted")  # an unfinished output is redone
    assert augment_cli(tiny_scene_dir, out, "--views", "5", "--seed", "1") == 0
    assert "reused" not in capsys.readouterr().out and not (out / ".augment-partial").exists()


@pytest.mark.parametrize("renderer", ["rotation", "depth"])
def test_augment_output_does_not_depend_on_the_thread_count(
    renderer: str, tiny_7scenes: Path, tmp_path: Path
) -> None:
    """Views render in --threads threads, taken in candidate order: one thread and three
    write the same files, byte for byte (rotations redraw many views)."""
    import torch

    threads = torch.get_num_threads()
    written = {}
    for count in (1, 3):
        out = tmp_path / f"threads{count}"
        flags = ("--views", "12", "--renderer", renderer, "--threads", str(count))
        assert augment_cli(tiny_7scenes, out, *flags) == 0
        assert torch.get_num_threads() == threads  # restored after one torch thread each
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "augment.json")
        written[count] = {str(p.relative_to(out)): p.read_bytes() for p in files}
        marker = json.loads((out / "augment.json").read_text())
        written[count]["frames"] = json.dumps([marker["frames"], marker["rejected"]]).encode()
    assert written[1] == written[3]
