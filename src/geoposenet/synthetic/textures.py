"""Procedural textures for the synthetic room: multi-scale noise, wood, planks, books, posters.

Every texture is a float32 (h, w, 3) array in [0, 1]; row 0 is the top of the surface. Sizes are
given in texels and `texel` is the texel edge length in metres, so patterns keep physical sizes.
All randomness comes from the numpy Generator passed in (deterministic for a given seed).
"""

from __future__ import annotations

import functools
import itertools

import numpy as np
import torch
import torch.nn.functional as F
from skimage import data as skdata
from skimage import draw

Rng = np.random.Generator

PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "horse",
    "clock",
    "moon",
    "camera",
    "page",
    "text",
)


def resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize an (H, W, C) float array to (h, w, C): antialiased bilinear (torch)."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.interpolate(
        t, size=(max(h, 1), max(w, 1)), mode="bilinear", antialias=True, align_corners=False
    )
    return out[0].permute(1, 2, 0).numpy()


@functools.cache
def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as float32 (H, W, 3) in [0, 1] (grey ones made RGB)."""
    image = np.asarray(getattr(skdata, name)(), dtype=np.float32)
    image = image / 255.0 if image.max() > 1.5 else image
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def noise(
    rng: Rng,
    h: int,
    w: int,
    texel: float,
    longest: float = 2.0,
    shortest: float = 0.02,
    roughness: float = 0.6,
) -> np.ndarray:
    """Fractal value noise (h, w), zero mean, unit std: octaves of wavelength `longest` down to
    `shortest` metres (never below 2 texels), amplitude proportional to wavelength^roughness."""
    total = np.zeros((h, w), dtype=np.float32)
    wavelength = longest
    shortest = max(shortest, 2 * texel)
    while wavelength >= shortest:
        gh = int(np.ceil(h * texel / wavelength)) + 2
        gw = int(np.ceil(w * texel / wavelength)) + 2
        grid = torch.from_numpy(rng.standard_normal((1, 1, gh, gw)).astype(np.float32))
        up = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)[0, 0]
        total += up.numpy() * (wavelength / longest) ** roughness
        wavelength /= 2
    return (total - total.mean()) / (total.std() + 1e-6)


def stretched_noise(rng: Rng, h: int, w: int, texel: float, stretch: float = 8.0) -> np.ndarray:
    """Noise elongated along the columns (wood grain, brushed metal), (h, w), unit std."""
    small = noise(rng, h, max(int(w / stretch), 2), texel * stretch, longest=3.0, shortest=0.01)
    return resize(small[..., None], h, w)[..., 0]


def tinted(
    rng: Rng,
    h: int,
    w: int,
    texel: float,
    colour: np.ndarray,
    amount: float = 0.08,
    chroma: float = 0.01,
    longest: float = 2.0,
) -> np.ndarray:
    """A colour with multi-scale luminance noise and a little chroma noise, (h, w, 3)."""
    lum = noise(rng, h, w, texel, longest=longest)
    tex = colour[None, None, :] * (1 + amount * lum[..., None])
    tex = tex + chroma * noise(rng, h, w, texel, longest=longest, shortest=0.05)[..., None] * (
        rng.standard_normal(3).astype(np.float32)
    )
    return tex.astype(np.float32)


def wood(rng: Rng, h: int, w: int, texel: float, colour: np.ndarray) -> np.ndarray:
    """Wood: stretched grain rings over a base colour, (h, w, 3)."""
    grain = stretched_noise(rng, h, w, texel)
    rows = np.arange(h, dtype=np.float32)[:, None] * texel
    rings = np.sin(2 * np.pi * (rows / 0.03 + 1.5 * grain))
    shade = 1 + 0.10 * grain + 0.06 * rings
    return (colour[None, None, :] * shade[..., None]).astype(np.float32)


def planks(rng: Rng, h: int, w: int, texel: float) -> np.ndarray:
    """A wooden plank floor: rows of planks with random lengths, colours and dark joints."""
    base = np.array([0.55, 0.38, 0.22], dtype=np.float32) * rng.uniform(0.85, 1.15)
    tex = wood(rng, h, w, texel, base)
    width = max(round(0.16 / texel), 2)
    for top in range(0, h, width):
        x = -int(rng.uniform(0, 1.5) / texel)
        while x < w:
            length = int(rng.uniform(0.7, 2.2) / texel)
            gain = rng.uniform(0.75, 1.25) * (1 + 0.08 * rng.standard_normal(3))
            x0, x1 = max(x, 0), min(x + length, w)
            tex[top : top + width, x0:x1] *= gain.astype(np.float32)
            tex[top : top + width, x0 : min(x0 + 1, w)] *= 0.45
            x += length
        tex[top : top + 1] *= 0.45
    return tex


def rug(rng: Rng, h: int, w: int, texel: float) -> np.ndarray:
    """A patterned rug: nested borders and a diamond field in random colours, (h, w, 3)."""
    colours = (0.4 * rng.uniform(0.1, 0.9, (5, 3)) + 0.6 * rng.uniform(0.2, 0.7, (5, 1))).astype(
        np.float32
    )  # muted: mostly grey level, some colour
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) * texel
    border = np.minimum(np.minimum(yy, h * texel - yy), np.minimum(xx, w * texel - xx))
    band = np.clip((border / 0.12).astype(int), 0, 3)
    size = rng.uniform(0.25, 0.45)
    diamond = (
        (np.abs((xx % size) - size / 2) + np.abs((yy % (size * 1.3)) - size * 0.65)) < size * 0.4
    ).astype(int)
    index = np.where(band < 3, band, 3 + diamond)
    tex = colours[np.clip(index, 0, 4)]
    return (tex * (1 + 0.12 * noise(rng, h, w, texel, longest=0.5)[..., None])).astype(np.float32)


def books(rng: Rng, h: int, w: int, texel: float, wood_colour: np.ndarray) -> np.ndarray:
    """A bookshelf front: shelf boards with rows of book spines of random sizes and colours."""
    tex = wood(rng, h, w, texel, wood_colour * 0.6)
    board = max(int(0.03 / texel), 1)
    top = board
    while top < h - board:
        shelf = int(rng.uniform(0.3, 0.42) / texel)
        bottom = min(top + shelf, h - board)
        x = int(rng.uniform(0.0, 0.1) / texel)
        while x < w:
            spine = max(int(rng.uniform(0.015, 0.07) / texel), 1)
            height = int(rng.uniform(0.55, 0.95) * (bottom - top))
            if rng.random() < 0.1:
                x += spine * 3  # a gap
                continue
            colour = rng.uniform(0.05, 0.9, 3).astype(np.float32)
            tex[bottom - height : bottom, x : x + spine] = colour
            label = bottom - int(height * rng.uniform(0.5, 0.8))
            tex[label : label + max(height // 10, 1), x : x + spine] = 1 - colour * 0.5
            x += spine
        top = bottom + board
    return tex


def shapes_poster(rng: Rng, h: int, w: int) -> np.ndarray:
    """Random circles, rectangles and polygons on a coloured background (abstract art)."""
    tex = np.empty((h, w, 3), dtype=np.float32)
    tex[:] = rng.uniform(0.1, 0.95, 3)
    for _ in range(int(rng.integers(12, 40))):
        colour = rng.uniform(0.0, 1.0, 3)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        size = rng.uniform(0.03, 0.3) * min(h, w)
        kind = rng.integers(3)
        if kind == 0:
            rr, cc = draw.disk((cy, cx), size, shape=(h, w))
        elif kind == 1:
            rr, cc = draw.rectangle(
                (cy, cx), extent=(size, size * rng.uniform(0.3, 3)), shape=(h, w)
            )
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, 3))
            rr, cc = draw.polygon(cy + size * np.sin(angles), cx + size * np.cos(angles), (h, w))
        tex[rr, cc] = colour
    return tex


def stripes_poster(rng: Rng, h: int, w: int) -> np.ndarray:
    """Bands of random widths and colours, horizontal or vertical."""
    n = h if rng.random() < 0.5 else w
    index = np.cumsum(rng.random(n) < 0.08)
    colours = rng.uniform(0.05, 0.95, (int(index.max()) + 1, 3)).astype(np.float32)
    line = colours[index]
    return np.ascontiguousarray(
        np.broadcast_to(line[:, None], (h, w, 3)) if n == h else np.broadcast_to(line, (h, w, 3))
    )


def whiteboard(rng: Rng, h: int, w: int) -> np.ndarray:
    """A whiteboard with coloured scribbles and a grey frame."""
    tex = np.full((h, w, 3), 0.93, dtype=np.float32)
    for _ in range(int(rng.integers(6, 14))):
        colour = rng.choice([[0.1, 0.1, 0.1], [0.8, 0.1, 0.1], [0.1, 0.2, 0.8], [0.1, 0.6, 0.2]])
        points = np.cumsum(rng.normal(0, 0.06 * min(h, w), (12, 2)), axis=0)
        points += [rng.uniform(0.1, 0.9) * h, rng.uniform(0.1, 0.9) * w]
        for (y0, x0), (y1, x1) in itertools.pairwise(points):
            rr, cc, val = draw.line_aa(int(y0), int(x0), int(y1), int(x1))
            keep = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            rr, cc, alpha = rr[keep], cc[keep], val[keep, None]
            tex[rr, cc] = (1 - alpha) * tex[rr, cc] + alpha * np.asarray(colour)
    edge = max(min(h, w) // 30, 1)
    tex[:edge], tex[-edge:], tex[:, :edge], tex[:, -edge:] = 0.5, 0.5, 0.5, 0.5
    return tex


def window(rng: Rng, h: int, w: int) -> np.ndarray:
    """A bright window: sky gradient with clouds, white frame and mullions."""
    rows = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    sky = np.array([0.55, 0.75, 0.98], dtype=np.float32) * (1 - 0.3 * rows) + 0.3 * rows
    clouds = np.clip(noise(rng, h, w, 1.0 / max(h, 1), longest=0.5, shortest=0.01), 0, None)
    tex = np.clip(sky + 0.25 * clouds[..., None], 0, 1).astype(np.float32)
    bar = max(min(h, w) // 25, 1)
    for x in np.linspace(0, w - bar, int(rng.integers(2, 4))).astype(int):
        tex[:, x : x + bar] = 0.95
    for y in np.linspace(0, h - bar, 3).astype(int):
        tex[y : y + bar] = 0.95
    return tex


def door(rng: Rng, h: int, w: int, texel: float) -> np.ndarray:
    """A panelled wooden door with a frame and a handle."""
    tex = wood(rng, h, w, texel, rng.uniform(0.3, 0.6, 3).astype(np.float32))
    frame = max(int(0.06 / texel), 1)
    tex[:frame] *= 0.6
    tex[:, :frame] *= 0.6
    tex[:, -frame:] *= 0.6
    for top, bottom in ((0.1, 0.45), (0.55, 0.92)):
        y0, y1 = int(top * h), int(bottom * h)
        x0, x1 = int(0.18 * w), int(0.82 * w)
        tex[y0:y1, x0 : x0 + frame // 2] *= 0.7
        tex[y0 : y0 + frame // 2, x0:x1] *= 0.7
        tex[y0:y1, x1 - frame // 2 : x1] *= 1.2
        tex[y1 - frame // 2 : y1, x0:x1] *= 1.2
    rr, cc = draw.disk((0.5 * h, 0.85 * w), max(0.035 / texel, 1.0), shape=(h, w))
    tex[rr, cc] = [0.8, 0.7, 0.3]
    return tex


def poster(rng: Rng, h: int, w: int, photos: list[str]) -> np.ndarray:
    """A poster, (h, w, 3): a random crop of the next unused sample photo from `photos` (which
    is consumed, so no photo hangs twice) or generated art."""
    choice = rng.integers(4)
    if choice == 0 or not photos:
        return shapes_poster(rng, h, w)
    if choice == 1:
        return stripes_poster(rng, h, w)
    image = photo(photos.pop())
    ih, iw = image.shape[:2]
    scale = min(ih / h, iw / w) * rng.uniform(0.7, 1.0)
    ch, cw = int(h * scale), int(w * scale)
    y0, x0 = rng.integers(0, ih - ch + 1), rng.integers(0, iw - cw + 1)
    tint = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    return np.clip(resize(image[y0 : y0 + ch, x0 : x0 + cw], h, w) * tint, 0, 1)


def paste(tex: np.ndarray, image: np.ndarray, top: int, left: int) -> None:
    """Copy `image` into `tex` with its top-left corner at (top, left), clipped to `tex`."""
    h, w = image.shape[:2]
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, tex.shape[0]), min(left + w, tex.shape[1])
    if y1 > y0 and x1 > x0:
        tex[y0:y1, x0:x1] = image[y0 - top : y1 - top, x0 - left : x1 - left]


def framed(image: np.ndarray, rng: Rng, texel: float) -> np.ndarray:
    """`image` with a picture frame of random colour and width (same size)."""
    out = image.copy()
    edge = max(int(rng.uniform(0.015, 0.05) / texel), 1)
    colour = rng.uniform(0.05, 0.8, 3).astype(np.float32)
    out[:edge], out[-edge:], out[:, :edge], out[:, -edge:] = colour, colour, colour, colour
    return out
