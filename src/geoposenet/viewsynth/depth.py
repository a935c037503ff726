"""Depth-fusion renderer: the depth maps of the training frames nearest a view, fused into one
coloured point set and splatted into the view's camera with a z-buffer.

Frames and units: world points in the scene's frame (metres); camera frames x right, y down,
z forward; pixel (row i, col j) has its centre at (u, v) = (j + 0.5, i + 0.5) (see `views`).

Per training frame with a 7-Scenes depth map (`cameras.depth_path`), cached (LRU):
- every `stride`-th depth pixel (rows and columns) with a valid depth (0 and 65535 mm are
  invalid) is back-projected through the depth camera `SEVENSCENES_DEPTH` with the frame's pose
  (the reader's convention: the depth camera shares the frame's pose, only its intrinsics differ);
- flying pixels are dropped first, at full resolution: a pixel is dropped when any valid one of
  its 8 neighbours differs from its depth by more than `edge_rel` (3 %) of that depth (at
  f = 585 a plane must be within ~5 deg of grazing to trip this, so in practice depth edges do,
  and the pixels on both sides of an edge go);
- each point is coloured by projecting it into the frame's colour camera (`SceneCameras.colour`)
  and reading the nearest colour pixel; points falling outside the colour image are dropped;
- each point keeps its footprint `stride * z / f_depth` (metres per source sample).

Rendering (`DepthRenderer.render`): the `neighbours` training frames nearest the view (distance
= metres + degrees / 25, the view's own `source` always among them) are projected into the target
camera; a point becomes a square splat of `round(f_tgt * footprint / z_tgt)` pixels a side,
clipped to 1..`max_splat`. Soft z-buffer: a pixel's colour and depth are the weighted mean of its
samples within `tol_abs + tol_rel * z` (1 cm + 1 %) of its front-most sample, so the nearest
surface wins; the weights favour the sources nearest the view (`blend_weights`), so a training
frame's own pose reproduces mostly its own image.
Small holes (an empty pixel with >= `fill_min` of its 8 neighbours covered) are filled with their
neighbours' mean, `fill_iterations` times, and count as covered (`valid`). The remaining pixels
get a colour pushed-pulled from the covered ones (an image pyramid), never black, and depth 0.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from geoposenet.baselines import ANGLE_PER_METRE
from geoposenet.errors import DatasetError, InputError
from geoposenet.geometry import quaternion_to_matrix_np
from geoposenet.images import decode_image
from geoposenet.scene import Frame, Intrinsics
from geoposenet.viewsynth.cameras import (
    SEVENSCENES_DEPTH,
    SceneCameras,
    depth_path,
    read_depth_m,
    scaled,
)
from geoposenet.viewsynth.views import Rendered, View

NEAR_M = 0.05  # points closer to the target camera than this are not drawn
EMPTY_GREY = 128.0  # the filler colour of an image without any covered pixel
BLEND_EPS = 0.02  # metres (+ degrees / 25): a source this close to the view counts as exact


@dataclass
class PointSet:
    """One frame's fused depth: `xyz` (N, 3) float32 world metres, `rgb` (N, 3) float32 0-255,
    `footprint` (N,) float32 metres per source sample (stride * z / f_depth)."""

    xyz: torch.Tensor
    rgb: torch.Tensor
    footprint: torch.Tensor

    def __len__(self) -> int:
        return int(self.xyz.shape[0])


@dataclass
class Splat:
    """The z-buffer of one render: `colour` (H, W, 3) float32 weighted mean colour (0-255) of
    the samples kept, `count` (H, W) int64 samples kept per pixel (0: no source), `depth`
    (H, W) float32 weighted mean camera z (metres) of the samples kept, 0 where none."""

    colour: np.ndarray
    count: np.ndarray
    depth: np.ndarray


def valid_depth_mask(depth_m: np.ndarray, edge_rel: float = 0.03) -> np.ndarray:
    """(H, W) bool: the pixels of a depth map (H, W) metres (0 = invalid) that make points: valid
    and no valid 8-neighbour differs from them by more than `edge_rel` of their depth (flying
    pixels at depth edges are dropped, on both sides of the edge)."""
    d = np.asarray(depth_m, dtype=np.float32)
    keep = np.isfinite(d) & (d > 0)
    d = np.where(keep, d, 0.0).astype(np.float32)
    padded = np.pad(d, 1)
    h, w = d.shape
    limit = edge_rel * d
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di == 0 and dj == 0:
                continue
            n = padded[1 + di : 1 + di + h, 1 + dj : 1 + dj + w]
            keep &= ~((n > 0) & (np.abs(n - d) > limit))
    return keep


def frame_points(
    depth_m: np.ndarray,
    colour: np.ndarray,
    colour_camera: Intrinsics,
    centre: np.ndarray,
    cam_from_world: np.ndarray,
    stride: int = 2,
    edge_rel: float = 0.03,
    depth_camera: Intrinsics = SEVENSCENES_DEPTH,
) -> PointSet:
    """Fuse one frame: depth (H, W) metres in `depth_camera` (0 = invalid), colour (h, w, 3)
    uint8 seen by `colour_camera`, both with the pose centre (3,) world / cam_from_world (3, 3)
    -> the frame's coloured world points (see the module docstring)."""
    keep = valid_depth_mask(depth_m, edge_rel)
    rows, cols = np.nonzero(keep[::stride, ::stride])
    rows, cols = rows * stride, cols * stride
    z = np.asarray(depth_m, dtype=np.float64)[rows, cols]
    x = (cols + 0.5 - depth_camera.cx) * z / depth_camera.fx
    y = (rows + 0.5 - depth_camera.cy) * z / depth_camera.fy
    # Colour camera: same pose, its own intrinsics.
    u = colour_camera.fx * x / z + colour_camera.cx
    v = colour_camera.fy * y / z + colour_camera.cy
    h, w = colour.shape[:2]
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    cam = np.stack((x, y, z), axis=-1)[inside]
    rgb = colour[v[inside].astype(np.int64), u[inside].astype(np.int64)]
    world = cam @ np.asarray(cam_from_world, dtype=np.float64) + np.asarray(centre)  # R^T X + c
    footprint = stride * z[inside] / depth_camera.fx
    return PointSet(
        torch.from_numpy(world.astype(np.float32)),
        torch.from_numpy(rgb.astype(np.float32)),
        torch.from_numpy(footprint.astype(np.float32)),
    )


def splat(
    points_cam: torch.Tensor,
    rgb: torch.Tensor | None,
    footprint: torch.Tensor,
    camera: Intrinsics,
    max_splat: int = 4,
    tol_abs: float = 0.01,
    tol_rel: float = 0.01,
    weight: torch.Tensor | None = None,
) -> Splat:
    """Z-buffer points (N, 3) float32 in the target camera's frame (metres), colours (N, 3) 0-255
    (None: depth only, colour zeros) and footprints (N,) metres into `camera`: square splats of
    round(f * footprint / z) pixels a side (1..max_splat), soft z-buffer (see the module): the
    samples kept at a pixel are averaged with `weight` (N,) > 0 (None: all 1)."""
    h, w = camera.height, camera.width
    x, y, z = points_cam.float().unbind(1)
    front = z > NEAR_M
    zc = torch.where(front, z, 1.0)  # no division by 0 behind the camera
    u = camera.fx * x / zc + camera.cx
    v = camera.fy * y / zc + camera.cy
    focal = 0.5 * (camera.fx + camera.fy)
    size = torch.clamp(torch.round(focal * footprint.float() / zc), 1, max_splat)
    j0 = torch.floor(u - size / 2 + 0.5)
    i0 = torch.floor(v - size / 2 + 0.5)
    seen = front & (j0 + size > 0) & (j0 < w) & (i0 + size > 0) & (i0 < h)
    ids = torch.nonzero(seen).squeeze(1)  # indices into the inputs from here on
    j0, i0 = j0[ids].to(torch.int64), i0[ids].to(torch.int64)
    # Offset (0, 0): every point; the others: only the points whose splat reaches them.
    big = torch.nonzero(size[ids] > 1).squeeze(1)
    big_size = size[ids][big]
    pixel_parts, sample_parts = [], []
    for di in range(max_splat):
        for dj in range(max_splat):
            reach = max(di, dj)
            sel = big[torch.nonzero(big_size > reach).squeeze(1)] if reach else None
            jj = j0 + dj if sel is None else j0[sel] + dj
            ii = i0 + di if sel is None else i0[sel] + di
            inside = (jj >= 0) & (jj < w) & (ii >= 0) & (ii < h)
            pixel_parts.append((ii * w + jj)[inside])
            sample_parts.append((ids if sel is None else ids[sel])[inside])
    pixel = torch.cat(pixel_parts)
    sample = torch.cat(sample_parts)
    zs = z[sample]
    front_z = torch.full((h * w,), float("inf"))
    front_z.scatter_reduce_(0, pixel, zs, reduce="amin")
    near = front_z[pixel]
    kept = torch.nonzero(zs <= near + tol_abs + tol_rel * near).squeeze(1)
    pixel, sample, zs = pixel[kept], sample[kept], zs[kept]
    ws = torch.ones(len(sample)) if weight is None else weight.float()[sample]
    count = torch.bincount(pixel, minlength=h * w)
    denom = torch.zeros(h * w).index_add_(0, pixel, ws)
    depth_sum = torch.zeros(h * w).index_add_(0, pixel, zs * ws)
    colour_sum = torch.zeros(h * w, 3)
    if rgb is not None:
        colour_sum.index_add_(0, pixel, rgb.float()[sample] * ws[:, None])
    denom = torch.where(count > 0, denom, 1.0)
    return Splat(
        (colour_sum / denom[:, None]).reshape(h, w, 3).numpy(),
        count.reshape(h, w).numpy(),
        (depth_sum / denom).reshape(h, w).numpy(),
    )


def blend_weights(distance: np.ndarray, beyond: float) -> np.ndarray:
    """(K,) blending weights of source frames at `distance` (metres + degrees / 25) from the
    view, `beyond` the distance of the first frame not used: max(1 - d / beyond, 0.05) /
    (d + BLEND_EPS), unstructured-lumigraph style: a frame at the view's pose dominates; the
    fading is floored at 5 % so a far frame still fills what only it sees."""
    d = np.asarray(distance, dtype=np.float64)
    if not np.isfinite(beyond):
        beyond = 2.0 * float(d.max()) + BLEND_EPS
    fade = np.maximum(1.0 - d / max(beyond, BLEND_EPS), 0.05)
    return fade / (d + BLEND_EPS)


def _neighbour_sums(a: np.ndarray) -> np.ndarray:
    """Sum over the 8 neighbours of each pixel of a (H, W, ...) array (zero outside)."""
    h, w = a.shape[:2]
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2)
    p = np.pad(a, pad)
    out = np.zeros_like(a)
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            if di != 1 or dj != 1:
                out += p[di : di + h, dj : dj + w]
    return out


def fill_small_holes(
    colour: np.ndarray | None,
    depth: np.ndarray,
    valid: np.ndarray,
    min_neighbours: int,
    iterations: int,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Fill empty pixels with >= min_neighbours of 8 valid neighbours by the neighbours' mean
    colour (H, W, 3) (None: depth only) and depth (H, W), `iterations` times; returns new
    (colour, depth, valid)."""
    colour = None if colour is None else colour.copy()
    depth, valid = depth.copy(), valid.copy()
    for _ in range(iterations):
        weight = valid.astype(np.float32)
        n = _neighbour_sums(weight)
        holes = ~valid & (n >= min_neighbours)
        if not holes.any():
            break
        if colour is not None:
            c = _neighbour_sums(colour * weight[..., None])
            colour[holes] = c[holes] / n[holes, None]
        d = _neighbour_sums(depth * weight)
        depth[holes] = d[holes] / n[holes]
        valid = valid | holes
    return colour, depth, valid


def push_pull(colour: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(H, W, 3) colour with every pixel outside `valid` (H, W) replaced by the mean colour of
    the nearest covered pixels at the finest pyramid level that has some (EMPTY_GREY if none)."""
    if valid.all():
        return colour
    if not valid.any():
        return np.full_like(colour, EMPTY_GREY)
    h, w = valid.shape
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    weight = np.zeros((2 * h2, 2 * w2), dtype=np.float32)
    weight[:h, :w] = valid
    premult = np.zeros((2 * h2, 2 * w2, 3), dtype=np.float32)
    premult[:h, :w] = colour * valid[..., None]
    ws = weight.reshape(h2, 2, w2, 2).sum(axis=(1, 3))
    cs = premult.reshape(h2, 2, w2, 2, 3).sum(axis=(1, 3))
    coarse = cs / np.maximum(ws, 1)[..., None]
    coarse = push_pull(coarse, ws > 0)
    up = coarse.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
    return np.where(valid[..., None], colour, up)


class DepthRenderer:
    """Renders views of a scene from its training frames' 7-Scenes depth maps (module docstring).

    frames: the training frames (View.source indexes them); cameras: their colour intrinsics.
    neighbours: frames fused per view (K); stride: depth pixels step; edge_rel: flying-pixel
    threshold; max_splat: largest splat side (px); tol_abs (m) / tol_rel: soft z-buffer band;
    fill_min / fill_iterations: small-hole filling; cache_frames: point sets kept (LRU);
    reach: neighbours farther from the view than its source by more than this (metres +
    degrees / 25) are left out (on real data a far frame's surface, with its own pose and depth
    errors, would cover the near ones': 32 -> 20 dB on a 7-Scenes stairs frame).
    """

    name = "depth"

    def __init__(
        self,
        frames: list[Frame],
        cameras: SceneCameras,
        neighbours: int = 6,
        stride: int = 2,
        edge_rel: float = 0.03,
        max_splat: int = 4,
        tol_abs: float = 0.01,
        tol_rel: float = 0.01,
        fill_min: int = 5,
        fill_iterations: int = 3,
        cache_frames: int = 32,
        reach: float = 2.0,
    ) -> None:
        if not frames:
            raise InputError("the depth renderer needs at least one training frame")
        if neighbours < 1 or stride < 1 or max_splat < 1 or cache_frames < 1:
            raise InputError("neighbours, stride, max_splat and cache_frames must be >= 1")
        self.frames = frames
        self.cameras = cameras
        self.neighbours = neighbours
        self.stride = stride
        self.edge_rel = edge_rel
        self.max_splat = max_splat
        self.tol_abs = tol_abs
        self.tol_rel = tol_rel
        self.fill_min = fill_min
        self.fill_iterations = fill_iterations
        self.cache_frames = cache_frames
        self.reach = reach
        self.centres = np.stack([f.centre for f in frames])
        self.rotations = quaternion_to_matrix_np(np.stack([f.quaternion for f in frames]))
        self.depths = [depth_path(f) for f in frames]
        self._cache: OrderedDict[int, PointSet] = OrderedDict()
        self._lock = threading.Lock()

    def nearest(self, view: View) -> tuple[list[int], np.ndarray]:
        """The K training frames nearest `view`, view.source first, and (K,) their distances
        (metres + degrees / 25) to it; then the distance of the next one (inf if none)."""
        if not 0 <= view.source < len(self.frames):
            raise InputError(f"view source {view.source} is not a training frame index")
        position = np.linalg.norm(self.centres - np.asarray(view.centre)[None], axis=1)
        trace = np.einsum("ij,nij->n", np.asarray(view.cam_from_world), self.rotations)
        angle = np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))
        distance = position + angle / ANGLE_PER_METRE
        order = np.argsort(np.where(np.arange(len(distance)) == view.source, -1.0, distance))
        reach = distance[view.source] + self.reach
        chosen = [
            int(i) for i in order[: self.neighbours] if i == view.source or distance[i] <= reach
        ]
        beyond = float(distance[order[self.neighbours]]) if len(order) > self.neighbours else np.inf
        return chosen, np.append(distance[chosen], beyond)

    def sources(self, view: View) -> list[int]:
        """Indices of the K training frames nearest `view`, view.source first."""
        return self.nearest(view)[0]

    def points(self, index: int) -> PointSet:
        """The fused point set of training frame `index` (cached, LRU); needs its depth map."""
        with self._lock:  # augment renders in several threads
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
                return cached
        frame, path = self.frames[index], self.depths[index]
        if path is None:
            raise DatasetError(frame.image, "this frame has no depth map (.depth.png)")
        colour = decode_image(frame.image).permute(1, 2, 0).numpy()
        camera = self.cameras.colour(frame)
        h, w = colour.shape[:2]
        if (camera.width, camera.height) != (w, h):
            camera = scaled(camera, w, h)
        rotation = self.rotations[index]
        points = frame_points(
            read_depth_m(path), colour, camera, frame.centre, rotation, self.stride, self.edge_rel
        )
        with self._lock:
            self._cache[index] = points
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)
        return points

    def _fused(self, view: View) -> tuple[PointSet, torch.Tensor]:
        """The K nearest frames' points and (N,) their blending weights."""
        chosen, distance = self.nearest(view)
        with_depth = [k for k, i in enumerate(chosen) if self.depths[i] is not None]
        if not with_depth:
            names = ", ".join(self.frames[i].name for i in chosen)
            raise DatasetError(
                self.frames[view.source].image,
                f"none of the {len(chosen)} training frames nearest this view ({names}) has a "
                "depth map (.depth.png): the depth renderer cannot render it",
            )
        sets = [self.points(chosen[k]) for k in with_depth]
        weights = blend_weights(distance[:-1], distance[-1])[with_depth]
        fused = PointSet(
            torch.cat([s.xyz for s in sets]),
            torch.cat([s.rgb for s in sets]),
            torch.cat([s.footprint for s in sets]),
        )
        sizes = torch.tensor([len(s) for s in sets])
        per_point = torch.repeat_interleave(torch.as_tensor(weights, dtype=torch.float32), sizes)
        return fused, per_point

    def _splat(self, view: View, camera: Intrinsics, colour: bool) -> Splat:
        fused, weight = self._fused(view)
        rotation = torch.as_tensor(np.asarray(view.cam_from_world), dtype=torch.float32)
        centre = torch.as_tensor(np.asarray(view.centre), dtype=torch.float32)
        cam = (fused.xyz - centre) @ rotation.T
        return splat(
            cam,
            fused.rgb if colour else None,
            fused.footprint,
            camera,
            self.max_splat,
            self.tol_abs,
            self.tol_rel,
            weight,
        )

    def render(self, view: View, camera: Intrinsics) -> Rendered:
        """The colour image (H, W, 3) uint8 of `view` through `camera`, `valid` (H, W) and the
        z-buffer depth (H, W) float32 metres (0 outside `valid`)."""
        s = self._splat(view, camera, colour=True)
        colour, depth, valid = fill_small_holes(
            s.colour, s.depth, s.count > 0, self.fill_min, self.fill_iterations
        )
        assert colour is not None
        colour = push_pull(colour, valid)
        image = np.clip(np.rint(colour), 0, 255).astype(np.uint8)
        return Rendered(image, valid, np.where(valid, depth, 0.0).astype(np.float32))

    def render_depth(self, view: View, camera: Intrinsics) -> Rendered:
        """Only the z-buffer depth (H, W) float32 metres of `view` through `camera` (e.g.
        SEVENSCENES_DEPTH), 0 outside `valid` (H, W), small holes filled as in `render`;
        `image` is an empty (0, 0, 3) uint8 array (colours are not computed)."""
        s = self._splat(view, camera, colour=False)
        _, depth, valid = fill_small_holes(
            None, s.depth, s.count > 0, self.fill_min, self.fill_iterations
        )
        empty = np.zeros((0, 0, 3), dtype=np.uint8)
        return Rendered(empty, valid, np.where(valid, depth, 0.0).astype(np.float32))


def _benchmark(root: str, width: int = 320, height: int = 240, neighbours: int = 6) -> float:
    """Views per second rendering every training pose of the 7-Scenes scene `root` at
    width x height, after one pass that fills the point-set cache (one CPU thread)."""
    import time

    from geoposenet.readers import load_scene

    torch.set_num_threads(1)
    scene = load_scene(root, points_per_frame=0, cache=False)
    train = scene.split("train")
    cameras = SceneCameras(scene)
    renderer = DepthRenderer(train, cameras, neighbours=neighbours)
    camera = scaled(cameras.colour(train[0]), width, height)
    views = [
        View(f.centre, quaternion_to_matrix_np(f.quaternion), i)
        for i, f in enumerate(train)
        if renderer.depths[i] is not None
    ]
    for view in views:
        renderer.render(view, camera)
    start = time.perf_counter()
    for view in views:
        renderer.render(view, camera)
    return len(views) / (time.perf_counter() - start)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m geoposenet.viewsynth.depth SCENE  (a 7-Scenes folder)")
    rate = _benchmark(sys.argv[1])
    print(f"{rate:.1f} views/s at 320x240, K = 6, 1 thread, torch {torch.__version__}")
