"""The synthetic room: axis-aligned geometry (walls, furniture boxes, pillars), textured faces and
surface points.

World frame: metres, z up, the room spans [0, 8] x [0, 6] x [0, 3]. Every surface is an
axis-aligned rectangle ("face"). Face ids: the room's inner walls are 0..5 = 2 * axis + side
(side 0 at the low coordinate), box b has faces 6 + 6 b + 2 * axis + side. Each face has its own
texture (texel edge `texel` metres), packed into one 2D atlas image sampled bilinearly with
grid_sample; a fine greyscale detail tile adds texture below the texel size, so close views never
look blurred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from geoposenet.synthetic import textures as tx

ROOM = np.array([[0.0, 0.0, 0.0], [8.0, 6.0, 3.0]])

# (kind, lo, hi): furniture and pillars, metres.
FURNITURE: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("books", (0.6, 5.6, 0.0), (2.5, 6.0, 2.0)),
    ("fabric", (0.0, 2.0, 0.0), (0.9, 4.0, 0.45)),
    ("fabric", (0.0, 2.0, 0.45), (0.25, 4.0, 1.0)),
    ("wood", (3.0, 3.5, 0.72), (4.4, 4.4, 0.78)),
    ("metal", (3.05, 3.55, 0.0), (3.12, 3.62, 0.72)),
    ("metal", (4.28, 4.28, 0.0), (4.35, 4.35, 0.72)),
    ("wood", (4.5, 0.0, 0.72), (6.6, 0.8, 0.78)),
    ("cabinet", (6.0, 0.0, 0.0), (6.6, 0.8, 0.72)),
    ("cabinet", (7.5, 0.6, 0.0), (8.0, 1.8, 1.1)),
    ("concrete", (2.6, 1.6, 0.0), (3.0, 2.0, 3.0)),
    ("concrete", (5.4, 3.6, 0.0), (5.8, 4.0, 3.0)),
    ("crate", (6.3, 4.5, 0.0), (7.0, 5.2, 0.55)),
    ("cabinet", (7.2, 5.0, 0.0), (8.0, 6.0, 2.2)),
)

WALL_COLOURS = np.array(
    [
        [0.85, 0.82, 0.74],
        [0.62, 0.74, 0.80],
        [0.80, 0.66, 0.58],
        [0.70, 0.78, 0.62],
        [0.88, 0.86, 0.84],
        [0.76, 0.70, 0.82],
    ],
    dtype=np.float32,
)


@dataclass
class Faces:
    """Per-face tables (F entries each). A hit point p maps to texel coordinates
    col = (p[col_axis] - col_origin) * col_sign / texel, row likewise with the row axis."""

    col_axis: np.ndarray
    row_axis: np.ndarray
    col_origin: np.ndarray
    row_origin: np.ndarray
    col_sign: np.ndarray
    row_sign: np.ndarray
    width: np.ndarray
    height: np.ndarray
    atlas_x: np.ndarray
    atlas_y: np.ndarray
    normal: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    exposed: np.ndarray
    detail_shift: np.ndarray


@dataclass
class Room:
    """Geometry and appearance. boxes: (B, 2, 3) lo/hi corners; atlas: (1, 3, AH, AW) float32;
    detail: (D, D) float32 zero-mean tile of edge `detail_texel` metres per texel."""

    boxes: np.ndarray
    faces: Faces
    atlas: torch.Tensor
    texel: float
    detail: torch.Tensor
    detail_texel: float
    detail_amount: float = 0.12

    def __post_init__(self) -> None:
        f = self.faces
        eye = np.eye(3, dtype=np.float32)
        col_vec = eye[f.col_axis] * (f.col_sign / self.texel)[:, None]
        row_vec = eye[f.row_axis] * (f.row_sign / self.texel)[:, None]
        col_off = -f.col_origin * f.col_sign / self.texel
        row_off = -f.row_origin * f.row_sign / self.texel
        table = np.column_stack(
            [
                col_vec,
                col_off,
                row_vec,
                row_off,
                f.detail_shift,
                f.atlas_x,
                f.atlas_y,
                f.width - 0.5,
                f.height - 0.5,
            ]
        )
        self._table = torch.from_numpy(table.astype(np.float32))  # (F, 14)

    def albedo(self, face: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Surface colour (P, 3) in [0, 1] at world points (P, 3) float32 lying on faces (P,).
        Texel coordinates are clamped half a texel inside each face's texture, so bilinear
        sampling never reads a neighbouring texture in the atlas."""
        tab = self._table.index_select(0, face)
        x0, x1, x2 = points.unbind(1)
        col = (x0 * tab[:, 0]).addcmul_(x1, tab[:, 1]).addcmul_(x2, tab[:, 2]).add_(tab[:, 3])
        row = (x0 * tab[:, 4]).addcmul_(x1, tab[:, 5]).addcmul_(x2, tab[:, 6]).add_(tab[:, 7])
        _, _, ah, aw = self.atlas.shape
        grid = torch.empty(1, 1, len(face), 2)
        x = torch.minimum(col.clamp_min(0.5), tab[:, 12]).add_(tab[:, 10])
        y = torch.minimum(row.clamp_min(0.5), tab[:, 13]).add_(tab[:, 11])
        grid[0, 0, :, 0] = x.mul_(2 / aw).sub_(1)
        grid[0, 0, :, 1] = y.mul_(2 / ah).sub_(1)
        colour = F.grid_sample(self.atlas, grid, mode="bilinear", align_corners=False)[0, :, 0].T
        size = self.detail.shape[0]
        scale = self.texel / self.detail_texel
        d_col = torch.remainder((col * scale + tab[:, 8]).long(), size)
        d_row = torch.remainder((row * scale + tab[:, 9]).long(), size)
        fine = torch.take(self.detail, d_row * size + d_col)
        return (colour * (1 + self.detail_amount * fine)[:, None]).clamp_(0, 1)


def pack(textures: list[np.ndarray], width: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Shelf-pack (h, w, 3) textures into one (AH, AW, 3) image; returns it and the (T, 2)
    top-left (x, y) of every texture."""
    width = max(width, *(t.shape[1] for t in textures))
    order = sorted(range(len(textures)), key=lambda i: (-textures[i].shape[0], i))
    corners = np.zeros((len(textures), 2), dtype=np.int64)
    x = y = shelf = 0
    for i in order:
        h, w = textures[i].shape[:2]
        if x + w > width:
            x, y, shelf = 0, y + shelf, 0
        corners[i] = (x, y)
        x, shelf = x + w, max(shelf, h)
    atlas = np.zeros((y + shelf, width, 3), dtype=np.float32)
    for (cx, cy), tex in zip(corners, textures, strict=True):
        atlas[cy : cy + tex.shape[0], cx : cx + tex.shape[1]] = tex
    return atlas, corners


def _face_frame(axis: int, normal_sign: float) -> tuple[int, float, int, float]:
    """(col_axis, col_sign, row_axis, row_sign) so a face reads unmirrored from its front side:
    walls have rows going down in z; floors and ceilings use x for columns, y for rows."""
    if axis == 2:
        return 0, 1.0, 1, 1.0 if normal_sign > 0 else -1.0
    normal = np.zeros(3)
    normal[axis] = normal_sign
    right = np.cross(-normal, [0.0, 0.0, 1.0])
    col_axis = int(np.argmax(np.abs(right)))
    return col_axis, float(np.sign(right[col_axis])), 2, -1.0


def _wall(
    rng: tx.Rng, h: int, w: int, texel: float, index: int, photos: list[str], paint: np.ndarray
) -> np.ndarray:
    """A painted wall with skirting, optional dado band, and posters/windows/doors/boards."""
    colour = paint * rng.uniform(0.9, 1.05)
    tex = tx.tinted(rng, h, w, texel, colour, amount=0.05)
    if rng.random() < 0.6:
        dado = int(rng.uniform(0.8, 1.1) / texel)
        lower = WALL_COLOURS[rng.integers(len(WALL_COLOURS))] * rng.uniform(0.6, 0.9)
        tex[h - dado :] = tx.tinted(rng, dado, w, texel, lower, amount=0.08)
        tex[h - dado : h - dado + max(int(0.04 / texel), 1)] = rng.uniform(0.2, 0.8, 3)
    tex[h - max(int(0.1 / texel), 1) :] *= 0.45
    taken: list[tuple[float, float, float, float]] = []
    width_m = w * texel
    kinds = ["door"] * (index == 0) + ["window"] * (2 if index == 2 else 0)
    kinds += ["board"] * int(rng.random() < 0.5) + ["poster"] * int(rng.integers(5, 9))
    kinds += ["small"] * int(rng.integers(4, 8))
    for kind in kinds:
        size = {
            "door": (0.9, 2.1, 0.0),
            "window": (rng.uniform(1.0, 1.5), 1.3, 0.95),
            "board": (rng.uniform(1.4, 2.0), 1.0, 0.9),
            "poster": (rng.uniform(0.4, 1.1), rng.uniform(0.35, 0.9), rng.uniform(1.0, 1.7)),
            "small": (rng.uniform(0.1, 0.35), rng.uniform(0.1, 0.35), rng.uniform(0.3, 2.2)),
        }[kind]
        iw, ih, bottom = size
        for _ in range(30):
            left = rng.uniform(0.1, max(width_m - iw - 0.1, 0.2))
            if all(
                left + iw + 0.1 < a
                or left > b + 0.1
                or bottom > top + 0.1
                or bottom + ih + 0.1 < low
                for a, b, low, top in taken
            ):
                break
        else:
            continue
        taken.append((left, left + iw, bottom, bottom + ih))
        ph, pw = max(int(ih / texel), 2), max(int(iw / texel), 2)
        if kind == "door":
            image = tx.door(rng, ph, pw, texel)
        elif kind == "window":
            image = tx.window(rng, ph, pw)
        elif kind == "board":
            image = tx.whiteboard(rng, ph, pw)
        else:
            image = tx.framed(tx.poster(rng, ph, pw, photos), rng, texel)
        tx.paste(tex, image, h - int((bottom + ih) / texel), int(left / texel))
    return tex


def _ceiling(rng: tx.Rng, h: int, w: int, texel: float) -> np.ndarray:
    """Off-white ceiling tiles with stains, lamps and vents."""
    tex = tx.tinted(rng, h, w, texel, np.array([0.88, 0.87, 0.84], np.float32), amount=0.05)
    tile = int(0.6 / texel)
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            tex[top : top + tile, left : left + tile] *= rng.uniform(0.93, 1.05)
        tex[top : top + 1] *= 0.7
    tex[:, ::tile] *= 0.7
    for _ in range(int(rng.integers(4, 7))):
        lamp = np.full((int(rng.uniform(0.2, 0.4) / texel), int(1.2 / texel), 3), 1.0, np.float32)
        tx.paste(tex, lamp, int(rng.uniform(0, h - lamp.shape[0])), int(rng.uniform(0, w - 30)))
    for _ in range(2):
        vent = tx.stripes_poster(rng, int(0.4 / texel), int(0.6 / texel)) * 0.3 + 0.4
        tx.paste(tex, vent, int(rng.uniform(0, h)), int(rng.uniform(0, w)))
    return tex


def _floor(rng: tx.Rng, h: int, w: int, texel: float) -> np.ndarray:
    """Plank floor with one or two rugs."""
    tex = tx.planks(rng, h, w, texel)
    for _ in range(int(rng.integers(1, 3))):
        rh, rw = int(rng.uniform(1.2, 2.2) / texel), int(rng.uniform(1.5, 3.0) / texel)
        tx.paste(
            tex,
            tx.rug(rng, rh, rw, texel),
            int(rng.uniform(0, h - rh)),
            int(rng.uniform(0, w - rw)),
        )
    return tex


def _box_face(
    rng: tx.Rng, kind: str, h: int, w: int, texel: float, front: bool, photos: list[str]
) -> np.ndarray:
    """Texture of one furniture face by material kind; `front` faces carry the most detail."""
    wood_colour = rng.uniform([0.35, 0.22, 0.1], [0.7, 0.5, 0.3]).astype(np.float32)
    if kind == "books" and front:
        return tx.books(rng, h, w, texel, wood_colour)
    if kind == "fabric":
        colour = rng.uniform(0.15, 0.7, 3).astype(np.float32)
        return tx.tinted(rng, h, w, texel, colour, amount=0.15, longest=0.5)
    if kind == "metal":
        return (0.55 + 0.08 * tx.stretched_noise(rng, h, w, texel))[..., None].repeat(3, 2)
    if kind == "concrete":
        tex = tx.tinted(rng, h, w, texel, np.full(3, 0.6, np.float32), amount=0.18)
        if front or rng.random() < 0.5:
            ph = int(min(h * 0.4, rng.uniform(0.4, 0.8) / texel))
            tx.paste(
                tex,
                tx.framed(tx.poster(rng, ph, max(w - 4, 2), photos), rng, texel),
                int(rng.uniform(0.35, 0.5) * h),
                2,
            )
        return tex
    tex = tx.wood(rng, h, w, texel, wood_colour)
    if kind == "cabinet" and front:
        return tx.door(rng, h, w, texel)
    if kind == "crate":
        label = tx.stripes_poster(rng, max(h // 3, 1), max(w // 2, 1))
        tx.paste(tex, label, h // 3, w // 4)
    return tex


def build_room(seed: int, texel: float, detail_texel: float = 0.0025) -> Room:
    """Build the room for `seed`: geometry is fixed, textures depend on the seed."""
    rng = np.random.default_rng([seed, 11])
    photos = [str(name) for name in rng.permutation(tx.PHOTOS)]  # each photo hangs at most once
    walls = WALL_COLOURS[rng.permutation(len(WALL_COLOURS))]  # a different paint on every wall
    boxes = np.array([[lo, hi] for _, lo, hi in FURNITURE], dtype=np.float64)
    centre = ROOM.mean(axis=0)
    columns: dict[str, list] = {k: [] for k in Faces.__dataclass_fields__}
    texs: list[np.ndarray] = []
    bounds = [ROOM, *boxes]
    for b, (lo, hi) in enumerate(bounds):
        for axis in range(3):
            for side in range(2):
                outward = 1.0 if side == 1 else -1.0
                sign = -outward if b == 0 else outward
                col_axis, col_sign, row_axis, row_sign = _face_frame(axis, sign)
                col_origin = lo[col_axis] if col_sign > 0 else hi[col_axis]
                row_origin = lo[row_axis] if row_sign > 0 else hi[row_axis]
                w = max(int(np.ceil((hi[col_axis] - lo[col_axis]) / texel)), 2)
                h = max(int(np.ceil((hi[row_axis] - lo[row_axis]) / texel)), 2)
                plane = (hi if side else lo)[axis]
                exposed = b == 0 or plane not in (ROOM[0, axis], ROOM[1, axis])
                normal = np.zeros(3)
                normal[axis] = sign
                if b == 0:
                    tex = (
                        _floor(rng, h, w, texel)
                        if (axis, side) == (2, 0)
                        else _ceiling(rng, h, w, texel)
                        if axis == 2
                        else _wall(
                            rng, h, w, texel, 2 * axis + side, photos, walls[2 * axis + side]
                        )
                    )
                elif not exposed:
                    h, w, tex = 2, 2, np.full((2, 2, 3), 0.2, np.float32)
                else:
                    to_centre = centre - (lo + hi) / 2
                    front = axis < 2 and normal[axis] * to_centre[axis] > 0.3
                    tex = _box_face(rng, FURNITURE[b - 1][0], h, w, texel, front, photos)
                face_lo, face_hi = lo.copy(), hi.copy()
                face_lo[axis] = face_hi[axis] = plane
                for key, value in (
                    ("col_axis", col_axis),
                    ("row_axis", row_axis),
                    ("col_origin", col_origin),
                    ("row_origin", row_origin),
                    ("col_sign", col_sign),
                    ("row_sign", row_sign),
                    ("width", w),
                    ("height", h),
                    ("normal", normal),
                    ("lo", face_lo),
                    ("hi", face_hi),
                    ("exposed", exposed),
                    ("detail_shift", rng.uniform(0, 512, 2)),
                ):
                    columns[key].append(value)
                texs.append(np.clip(tex, 0, 1))
    atlas, corners = pack(texs)
    columns["atlas_x"], columns["atlas_y"] = list(corners[:, 0]), list(corners[:, 1])
    ints = {"col_axis", "row_axis", "width", "height", "atlas_x", "atlas_y"}
    faces = Faces(
        **{
            k: np.asarray(
                v, dtype=np.int64 if k in ints else bool if k == "exposed" else np.float32
            )
            for k, v in columns.items()
        }
    )
    detail = tx.noise(
        rng,
        512,
        512,
        detail_texel,
        longest=512 * detail_texel / 4,
        shortest=2 * detail_texel,
        roughness=0.3,
    )
    detail = np.clip(detail / 2.5, -1, 1)
    image = torch.from_numpy(atlas).permute(2, 0, 1)[None].contiguous()
    return Room(boxes, faces, image, texel, torch.from_numpy(detail), detail_texel)


def sample_points(room: Room, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` points uniformly over the exposed surfaces (area-weighted), nudged 1 mm off the
    surface along its normal. Returns points (M, 3) float64, face ids (M,), colours (M, 3) uint8."""
    rng = np.random.default_rng([seed, 12])
    f = room.faces
    extent = (f.hi - f.lo).astype(np.float64)
    area = np.prod(np.where(extent > 0, extent, 1.0), axis=1) * f.exposed
    face = rng.choice(len(area), size=count, p=area / area.sum())
    points = f.lo[face] + rng.random((count, 3)) * extent[face]
    points = points.astype(np.float64) + 1e-3 * f.normal[face]
    colour = room.albedo(torch.from_numpy(face), torch.from_numpy(points.astype(np.float32)))
    return points, face, np.round(colour.numpy() * 255).astype(np.uint8)
