"""`geoposenet augment DATA --out AUG`: DATA plus views rendered at new poses, as a dataset.

Steps: read DATA (with its dataset options: --images, --test-list, --test-every, --scale,
--scale-from); choose the renderer (`auto`: the room's exact caster when DATA is the built-in
room, else depth fusion when the training frames have 7-Scenes depth maps, else rotations by
homography); sample new poses in free space near the training frames (rotations only, for the
homography); render each, redrawing views below `min_coverage`; write the originals and the new
sequences (`output`) and augment.json, check the result reads back, with the same options, with
every frame and DATA's test frames, and remove the partial marker last. The test split is DATA's,
untouched: the readers compute a COLMAP or nerfstudio split over the captured images only.
Units: poses are sampled in the units DATA is read in (metres with a scale; --max-shift and
--clearance are then metres) and written back in DATA's own, so AUG read with the same
--scale is in metres too.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from geoposenet.cache import atomic_write_text
from geoposenet.choices import RENDERERS
from geoposenet.errors import DatasetError, InputError
from geoposenet.geometry import matrix_to_quaternion_np
from geoposenet.readers import load_scene
from geoposenet.readers._augmented import MARKER, synthetic_sequences
from geoposenet.readers._common import Problems
from geoposenet.readers._scale import scale_from_file
from geoposenet.scene import Frame, Intrinsics, Scene
from geoposenet.synthetic.core import visible
from geoposenet.threads import ordered_map
from geoposenet.viewsynth import output
from geoposenet.viewsynth.cameras import SEVENSCENES_DEPTH, SceneCameras, depth_path
from geoposenet.viewsynth.exact import ExactRenderer, room_marker
from geoposenet.viewsynth.rotation import RotationRenderer
from geoposenet.viewsynth.sampler import FreeSpace, Limits, sample_views
from geoposenet.viewsynth.views import Rendered, Renderer, View

DRAWS_PER_VIEW = 4  # candidate poses drawn per requested view (low-coverage ones are redrawn)


@dataclass
class AugmentReport:
    """What `augment` wrote."""

    root: Path
    source: Path
    format: str
    renderer: str
    views: int
    original_train: int
    sequences: list[str]
    rejected: int
    coverage_median: float
    seconds: float
    render_seconds: float
    options: dict[str, Any]
    reused: bool = False

    def describe(self) -> str:
        if self.reused:
            return (
                f"{self.root}: reused, complete for this command ({self.original_train} "
                f"original + {self.views} synthesised training frames, {self.renderer} renderer)"
            )
        rate = self.views / self.render_seconds if self.render_seconds else 0.0
        flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in sorted(self.options.items()))
        return (
            f"augmented {self.format} dataset written to {self.root}: {self.original_train} "
            f"original + {self.views} synthesised training frames ({self.renderer} renderer, "
            f"sequences {', '.join(self.sequences)}), test split of {self.source} unchanged\n"
            f"rendering: {rate:.1f} views/s; median coverage {self.coverage_median:.3f}; "
            f"{self.rejected} views redrawn (coverage too low); {self.seconds:.0f} s in all"
            + (f"\nread it with the same dataset flags as DATA: {flags}" if flags else "")
        )


def has_depth(frames: list[Frame]) -> bool:
    """Whether at least half of `frames` have a 7-Scenes depth map (then `auto` chooses the
    depth renderer, which renders views of the frames that have one)."""
    return bool(frames) and sum(depth_path(f) is not None for f in frames) * 2 >= len(frames)


def choose_renderer(name: str, scene: Scene, train: list[Frame]) -> str:
    """The renderer `name` resolves to for `scene` (InputError when it cannot render it)."""
    if name not in RENDERERS:
        raise InputError(f"--renderer: expected one of {', '.join(RENDERERS)}, got {name!r}")
    is_room = room_marker(scene.root) is not None
    depth = scene.format == "7scenes" and has_depth(train)
    some_depth = scene.format == "7scenes" and any(depth_path(f) for f in train)
    if name == "auto":
        return "exact" if is_room else "depth" if depth else "rotation"
    if name == "exact" and not is_room:
        raise InputError("--renderer exact renders only the built-in room (`geoposenet synth`)")
    if name == "depth" and not some_depth:
        raise InputError(
            "--renderer depth needs 7-Scenes depth maps (none of the training frames has "
            "one); use --renderer rotation"
        )
    return name


def build_renderer(
    name: str,
    scene: Scene,
    train: list[Frame],
    cameras: SceneCameras,
    metres_per_unit: float | None = None,
) -> Renderer:
    """The renderer called `name` for the training frames `train` (of a scene read with the
    scale `metres_per_unit`, if any)."""
    if name == "exact":
        return ExactRenderer(scene.root, train, metres_per_unit or 1.0)
    if name == "depth":
        from geoposenet.viewsynth.depth import DepthRenderer

        return DepthRenderer(train, cameras)
    return RotationRenderer(train, cameras)


def augment(
    data: Path,
    out: Path,
    views: int = 1000,
    renderer: str = "auto",
    limits: Limits | None = None,
    seed: int = 0,
    min_coverage: float = 0.7,
    progress: bool = True,
    options: Mapping[str, Any] | None = None,
    threads: int = 0,
) -> AugmentReport:
    """Write DATA plus `views` synthesised training views to `out` (see the module docstring).
    `options`: DATA's dataset options (load_scene's images, test_list, test_every, scale,
    scale_from), which read AUG the same way; `threads`: rendering threads (0: torch's thread
    count, by default the cores); the output does not depend on it."""
    started = time.perf_counter()
    data = Path(data)
    options = {k: v for k, v in (options or {}).items() if v is not None}
    if views < 1:
        raise InputError(f"--views: expected a positive count, got {views}")
    if threads < 0:
        raise InputError(f"--threads: expected 0 or a positive count, got {threads}")
    if not 0 <= min_coverage <= 1:
        raise InputError(f"--min-coverage: expected a fraction in [0, 1], got {min_coverage}")
    images = _image_folder(data, options.get("images"))
    limits = limits or Limits()
    request = {
        "source": str(data.resolve()),
        "dataset_options": {k: str(v) if isinstance(v, Path) else v for k, v in options.items()},
        "views": views,
        "renderer": renderer,
        "limits": asdict(limits),
        "seed": seed,
        "min_coverage": min_coverage,
    }
    earlier_output = _complete(Path(out), request)
    if earlier_output is not None:
        return earlier_output
    scene = load_scene(data, **options)
    if scene.format not in output.FORMATS:
        raise InputError(
            f"augment writes {', '.join(output.FORMATS)} datasets; {data} is {scene.format}"
        )
    scale = _metres_per_unit(data, options)
    folder = output.name_folder(scene.format, [f.name for f in scene.split("train")])
    if scene.format == "nerfstudio" and images is not None and not folder:
        raise InputError(
            f"--images {images}: the file paths of {data} have no folder for it to replace"
        )
    kind = choose_renderer(renderer, scene, scene.split("train"))
    # the frames new views derive from: for depth fusion, those with a depth map
    train = [f for f in scene.split("train") if kind != "depth" or depth_path(f) is not None]
    if kind == "rotation":
        limits = replace(limits, rotation_only=True)
    cameras = SceneCameras(scene)
    render = build_renderer(kind, scene, train, cameras, scale)
    candidates = _candidates(scene, train, limits, views, seed)
    output.prepare(Path(out), data)
    out = Path(out).resolve()
    output.copy_dataset(data.resolve(), out)
    existing = {f.sequence for f in scene.frames}
    existing |= output.sequence_folders(out, scene.format, folder, images)
    names = output.sequence_names(scene.format, -(-views // output.SEQUENCE_LENGTH), existing)
    place = output.Placement(out, scene.format, folder, images)
    render_start = time.perf_counter()
    try:
        written, rejected = _render_all(
            place, scene, train, cameras, render, kind, candidates, views, names, min_coverage,
            threads, progress,
        )  # fmt: skip
        render_seconds = time.perf_counter() - render_start
        output.finish(out, scene.format, written, scale)
        sequences = sorted({f.sequence for f in written})
        earlier = synthetic_sequences(data, Problems(strict=True))
        marker = {
            "request": request,
            "format": scene.format,
            "original_train": len(scene.split("train")),
            "coverage_median": float(np.median([f.coverage for f in written])),
            "synthetic_sequences": sorted(earlier | set(sequences)),
            "source": str(data.resolve()),
            "dataset_options": {
                k: str(v) if isinstance(v, Path) else v for k, v in options.items()
            },
            "renderer": kind,
            "views": len(written),
            "seed": seed,
            "limits": asdict(limits),
            "min_coverage": min_coverage,
            "rejected": rejected,
            "render_views_per_s": round(len(written) / render_seconds, 2),
            "frames": [
                {"name": f.name, "source": f.source, "coverage": round(f.coverage, 4)}
                for f in written
            ],
        }
        # before the check: the readers split COLMAP and nerfstudio by it
        atomic_write_text(out / MARKER, json.dumps(marker, indent=1) + "\n")
        _check(out, options, len(scene.split("train")) + len(written), scene.split("test"))
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # nothing half-written is left behind
        raise
    (out / output.PARTIAL).unlink()
    return AugmentReport(
        out,
        data.resolve(),
        scene.format,
        kind,
        len(written),
        len(scene.split("train")),
        sequences,
        rejected,
        float(np.median([f.coverage for f in written])),
        time.perf_counter() - started,
        render_seconds,
        options,
    )


def _complete(out: Path, request: dict[str, Any]) -> AugmentReport | None:
    """The report of a complete earlier output in `out` of the same request (same DATA,
    dataset options, views, renderer, limits, seed and coverage), else None."""
    path = out / MARKER
    if not path.is_file() or (out / output.PARTIAL).exists():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("request") != request:
        return None
    return AugmentReport(
        out.resolve(), Path(request["source"]), marker["format"], marker["renderer"],
        marker["views"], marker["original_train"], marker["synthetic_sequences"],
        marker["rejected"], marker["coverage_median"], 0.0, 0.0,
        dict(request["dataset_options"]), reused=True,
    )  # fmt: skip


def _image_folder(data: Path, images: str | Path | None) -> str | None:
    """The --images folder, checked to be relative to DATA and inside it: AUG has its own copy
    of it, holding the synthesised images too, which the same relative flag names (an
    absolute path would name DATA's folder when reading AUG). InputError otherwise."""
    if images is None:
        return None
    root = data.resolve()
    folder = (root / images).resolve()
    if Path(images).is_absolute() or (folder != root and root not in folder.parents):
        raise InputError(
            f"--images {images}: augment writes the synthesised images beside DATA's, in AUG's "
            f"copy of the image folder, so it must be a folder inside {data}, given relative "
            "to it (the same flag then reads AUG)"
        )
    return Path(images).as_posix()


def _metres_per_unit(data: Path, options: Mapping[str, Any]) -> float | None:
    """The scale DATA is read with (--scale, or --scale-from's fit), None without one."""
    if options.get("scale") is not None:
        return float(options["scale"])
    if options.get("scale_from") is None:
        return None
    unscaled = load_scene(data, **{k: v for k, v in options.items() if k != "scale_from"})
    scale = scale_from_file(Path(options["scale_from"]), unscaled, Problems(strict=True))
    assert scale is not None  # strict: a problem raised
    return scale


def _candidates(
    scene: Scene, train: list[Frame], limits: Limits, views: int, seed: int
) -> list[View]:
    """DRAWS_PER_VIEW x `views` sampled poses in a seeded random order (views that fail the
    coverage test are replaced by the next ones, so the kept views are an unbiased subset)."""
    try:
        free = None if limits.rotation_only else FreeSpace(train, scene.points, limits)
        candidates = sample_views(train, free, limits, views * DRAWS_PER_VIEW, seed)
    except ValueError as error:
        raise InputError(f"augment {scene.root}: {error}") from None
    order = np.random.default_rng([seed, 4101]).permutation(len(candidates))
    return [candidates[i] for i in order]


@dataclass(frozen=True)
class _Result:
    """One candidate rendered: its colour view and, when kept, depth and visible points."""

    rendered: Rendered
    depth: Rendered | None = None
    ids: np.ndarray | None = None  # None: below min_coverage, not kept
    uv: np.ndarray | None = None


def _render_all(
    place: output.Placement,
    scene: Scene,
    train: list[Frame],
    cameras: SceneCameras,
    render: Renderer,
    kind: str,
    candidates: list[View],
    views: int,
    names: list[str],
    min_coverage: float,
    threads: int,
    progress: bool,
) -> tuple[list[output.SynthFrame], int]:
    """Render candidates until `views` pass `min_coverage`; write each (image encoding in a
    writer thread). Candidates render in `threads` threads (0: torch's count; each on one torch
    thread; the renderers' array work releases the GIL) and are taken in candidate order, so
    the output does not depend on the thread count. Returns the written frames and the number
    of views redrawn."""
    written: list[output.SynthFrame] = []
    rejected = 0
    pending: deque[Future[None]] = deque()
    bar = tqdm(
        total=views, desc=f"rendering ({kind})", unit="view", disable=None if progress else True
    )
    # 7-Scenes: a sequence has depth for all its frames or none (rotations need the source's)
    depth_wanted = scene.format == "7scenes" and (
        kind != "rotation" or all(depth_path(f) is not None for f in train)
    )

    def one(view: View) -> _Result:
        source = train[view.source]
        camera = cameras.colour(source)
        rendered = render.render(view, camera)
        if rendered.coverage < min_coverage:
            return _Result(rendered)
        depth = render.render_depth(view, SEVENSCENES_DEPTH) if depth_wanted else None
        ids, uv = _visibility(scene, source, view, camera, rendered, kind)
        return _Result(rendered, depth, ids, uv)

    results = ordered_map(one, candidates, threads)
    with closing(results), ThreadPoolExecutor(1) as writer:
        for view, result in zip(candidates, results, strict=True):
            if result.ids is None or result.uv is None:  # below min_coverage
                rejected += 1
                continue
            index = len(written)
            sequence = names[index // output.SEQUENCE_LENGTH]
            name = place.name(sequence, index % output.SEQUENCE_LENGTH)
            written.append(
                output.SynthFrame(
                    name,
                    sequence,
                    view.centre,
                    matrix_to_quaternion_np(view.cam_from_world),
                    cameras.colour(train[view.source]),
                    train[view.source].name,
                    result.rendered.coverage,
                    result.ids,
                    result.uv,
                )
            )
            depth_m = result.depth.depth if result.depth is not None else None
            pending.append(
                writer.submit(
                    output.write_frame,
                    place.file(name),
                    scene.format,
                    result.rendered.image,
                    depth_m,
                    view.centre,
                    view.cam_from_world,
                )
            )
            while len(pending) > 8:
                pending.popleft().result()
            bar.update()
            if len(written) == views:
                break
        for done in pending:
            done.result()
    bar.close()
    if len(written) < views:
        raise InputError(
            f"only {len(written)} of {views} views reached --min-coverage {min_coverage} in "
            f"{len(candidates)} draws; lower --min-coverage or --max-angle"
        )
    return written, rejected


def _visibility(
    scene: Scene, source: Frame, view: View, camera: Intrinsics, rendered: Rendered, kind: str
) -> tuple[np.ndarray, np.ndarray]:
    """The scene points a synthesised view sees: occlusion from the rendered depth, or for a
    rotation (same centre, same occlusions) the source frame's points that stay in view. Only
    for the formats that store what a frame sees (Cambridge's NVM, a COLMAP model); the other
    readers find it from the depth maps or by projection."""
    if scene.format not in ("cambridge", "colmap") or not len(scene.points):
        return np.zeros(0, np.int64), np.zeros((0, 2))
    if kind == "rotation":
        ids, uv = visible(
            scene.points[source.point_ids], view.centre, view.cam_from_world, camera, None
        )
        return source.point_ids[ids], uv
    return visible(scene.points, view.centre, view.cam_from_world, camera, rendered.depth)


def _check(out: Path, options: Mapping[str, Any], expected_train: int, test: list[Frame]) -> None:
    """The written dataset must read back (with DATA's options) with every training frame and
    DATA's `test` frames."""
    try:
        scene = load_scene(out, **options)
    except DatasetError as error:
        raise RuntimeError(f"the augmented dataset does not read back: {error}") from error
    got = len(scene.split("train"))
    if got != expected_train:
        raise RuntimeError(
            f"the augmented dataset reads {got} training frames, not {expected_train}"
        )
    if [f.name for f in scene.split("test")] != [f.name for f in test]:
        raise RuntimeError("the augmented dataset's test frames are not DATA's")
