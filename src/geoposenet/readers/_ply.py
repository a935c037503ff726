"""The vertices of a PLY point cloud (ASCII or binary little endian): their x, y, z.

Only what point clouds written by nerfstudio, COLMAP and Open3D need: a header (`ply`, `format`,
`comment`/`obj_info`, `element`, scalar `property`, `end_header`) whose first element is
`vertex` with properties x, y and z among others (colours, normals are read past). Elements after
the vertices (faces) are ignored. Problems name the file and the header line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoposenet.readers._common import Problems

TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
FORMATS = ("ascii", "binary_little_endian")


def read_ply_points(path: Path, problems: Problems) -> np.ndarray | None:
    """(M, 3) float64 vertex positions of the PLY file `path`; None after reporting a problem."""
    if not path.is_file():
        problems.add(path, "point cloud file not found")
        return None
    data = path.read_bytes()
    end = data.find(b"end_header")
    body = data.find(b"\n", end) + 1 if end >= 0 else 0
    if not data.startswith(b"ply") or end < 0 or body == 0:
        problems.add(path, "not a PLY file (expected 'ply' ... 'end_header')", 1)
        return None
    header = _header(data[:end].decode("ascii", "replace").splitlines(), path, problems)
    if header is None:
        return None
    fmt, count, properties = header
    names = [name for name, _ in properties]
    dtype = np.dtype([(name, "<" + kind) for name, kind in properties])
    if fmt == "ascii":
        rows = [row.split() for row in data[body:].decode("ascii", "replace").split("\n")]
        rows = [tokens for tokens in rows if tokens][:count]
        if len(rows) < count:
            problems.add(path, f"expected {count} vertex lines, found {len(rows)}")
            return None
        for k, tokens in enumerate(rows):
            if len(tokens) != len(names):
                problems.add(
                    path, f"vertex {k}: expected {len(names)} numbers, found {len(tokens)}"
                )
                return None
        try:
            table = np.array(rows, dtype=np.float64).reshape(count, len(names))
        except ValueError:
            problems.add(path, "a vertex line holds something that is not a number")
            return None
        xyz = table[:, [names.index(a) for a in "xyz"]]
    else:
        available = (len(data) - body) // dtype.itemsize
        if available < count:
            problems.add(path, f"the file ends after {available} of {count} vertices")
            return None
        vertices = np.frombuffer(data, dtype=dtype, count=count, offset=body)
        xyz = np.stack([vertices[a].astype(np.float64) for a in "xyz"], axis=1).reshape(-1, 3)
    if not np.isfinite(xyz).all():
        problems.add(path, "non-finite vertex coordinates")
        return None
    return xyz


def _header(
    lines: list[str], path: Path, problems: Problems
) -> tuple[str, int, list[tuple[str, str]]] | None:
    """(format, vertex count, vertex properties as (name, numpy kind)) or None (reported)."""
    fmt, count, element = "", -1, ""
    properties: list[tuple[str, str]] = []
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens or tokens[0] in ("ply", "comment", "obj_info"):
            continue
        if tokens[0] == "format":
            fmt = tokens[1] if len(tokens) == 3 else ""
            if fmt not in FORMATS:
                problems.add(path, f"PLY format {' '.join(tokens[1:])!r}: expected "
                             f"{' or '.join(FORMATS)}", number)  # fmt: skip
                return None
        elif tokens[0] == "element" and len(tokens) == 3 and tokens[2].isdigit():
            if element == "" and tokens[1] != "vertex":
                problems.add(path, f"the first element is {tokens[1]!r}, not 'vertex'", number)
                return None
            element = tokens[1]
            count = int(tokens[2]) if element == "vertex" else count
        elif tokens[0] == "property" and element == "vertex":
            if len(tokens) != 3 or tokens[1] not in TYPES:
                problems.add(path, f"vertex property {line.strip()!r} is not a scalar", number)
                return None
            properties.append((tokens[2], TYPES[tokens[1]]))
        elif tokens[0] not in ("property",):
            problems.add(path, f"unexpected PLY header line {line.strip()!r}", number)
            return None
    names = [name for name, _ in properties]
    if not fmt or count < 0 or not {"x", "y", "z"} <= set(names) or len(set(names)) < len(names):
        problems.add(path, "the PLY header needs a format and a vertex element with x, y, z")
        return None
    return fmt, count, properties
