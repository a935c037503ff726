"""Render speed of the synthetic `room` scene and a contact sheet of sample frames.

Usage: python benchmarks/synthetic_speed.py [--frames 120] [--threads 1] [--sheet sheet.png]
Prints frames/s of each rendering stage (ray casting, texturing + shading, exposure) and of the
whole per-frame pipeline including visibility and PNG encoding (serially; `synthesize` overlaps the
encoding in a second thread), then writes the contact sheet. One torch thread is the default, as
in `synthesize`: the per-frame tensors are too small to gain from more.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from geoposenet.synthetic.core import PRESETS, sequence_poses, visible
from geoposenet.synthetic.render import Caster, expose, render_colour
from geoposenet.synthetic.room import build_room, sample_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--sheet", type=Path, default=Path(tempfile.gettempdir()) / "geoposenet_synthetic_sheet.png"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = PRESETS["room"]
    camera = preset.camera

    start = time.perf_counter()
    room = build_room(args.seed, preset.texel)
    points, _, _ = sample_points(room, preset.points, args.seed)
    build_s = time.perf_counter() - start
    sequences = sequence_poses(preset, room, args.seed)
    poses = [(c, r) for _, cs, rs in sequences for c, r in zip(cs, rs, strict=True)]
    step = max(len(poses) // args.frames, 1)
    poses = poses[::step][: args.frames]
    caster = Caster(room.faces, camera)
    gain = np.ones(3)

    stages = {"cast": 0.0, "texture+shade": 0.0, "expose": 0.0, "visibility": 0.0, "png": 0.0}
    images = []
    for i, (centre, rotation) in enumerate(poses):
        t0 = time.perf_counter()
        depth, face, hits = caster.cast(centre, rotation)
        t1 = time.perf_counter()
        colour = render_colour(room, face, hits)
        t2 = time.perf_counter()
        image = expose(colour, gain, preset.noise, i)
        t3 = time.perf_counter()
        visible(camera, depth, points, centre, rotation)
        t4 = time.perf_counter()
        Image.fromarray(image).save(io.BytesIO(), format="PNG", compress_level=1)
        t5 = time.perf_counter()
        for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            stages[key] += dt
        images.append(image)

    n = len(poses)
    render = stages["cast"] + stages["texture+shade"] + stages["expose"]
    print(
        f"room {camera.width}x{camera.height}, {n} frames, {args.threads} torch threads, "
        f"scene build {build_s:.2f} s"
    )
    print(f"{'stage':<28}{'ms/frame':>10}{'frames/s':>10}")
    for key, total in stages.items():
        print(f"{key:<28}{1000 * total / n:>10.2f}{n / total:>10.1f}")
    print(f"{'render (cast+shade+expose)':<28}{1000 * render / n:>10.2f}{n / render:>10.1f}")
    total = sum(stages.values())
    print(f"{'all (as synthesize does)':<28}{1000 * total / n:>10.2f}{n / total:>10.1f}")

    columns = 6
    picks = images[:: max(len(images) // 24, 1)][:24]
    rows = (len(picks) + columns - 1) // columns
    sheet = np.full((rows * (camera.height + 4), columns * (camera.width + 4), 3), 255, np.uint8)
    for k, image in enumerate(picks):
        y, x = (k // columns) * (camera.height + 4), (k % columns) * (camera.width + 4)
        sheet[y : y + camera.height, x : x + camera.width] = image
    Image.fromarray(sheet).save(args.sheet)
    print(f"contact sheet: {args.sheet} ({len(picks)} frames)")


if __name__ == "__main__":
    main()
