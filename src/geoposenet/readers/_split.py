"""The test split of a format that has none of its own (COLMAP, nerfstudio) or whose own one the
user replaces: `--test-list FILE`, `--test-every N`, or held-out stretches by default.

The default holds out whole stretches, as the validation split does (geoposenet.validation):
with at least 3 sequences, the last round(0.15 x count) of them by name (at least 1) are test
sequences; otherwise the last 15% of every sequence (by name) is a test stretch and the 3% just
before it is a *gap*, in neither split (neighbouring video frames are near-duplicates, so a test
frame beside a training frame measures memory, not localisation). A sequence too short for a
training frame, a gap and a test frame stays training. Gap images are read and checked like
frames, then left out; readers note them (`check` lists them), so nothing is dropped in silence.
`--test-every N` makes every N-th name (from the first) a test frame: interleaved, so only for
comparison with papers that split that way.
Images of a dataset written by `geoposenet augment` (their sequences listed in its augment.json)
take no part in any of these rules: the split is computed over the captured images alone, so it is
DATA's, and the synthesised images are always training images.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Literal

from geoposenet.errors import InputError
from geoposenet.readers._common import Problems, content_lines, read_lines
from geoposenet.validation import AUTO_FRACTION, GAP_FRACTION

Role = Literal["train", "test", "gap"]
TEST_FRACTION = AUTO_FRACTION  # share of each sequence (or of the sequences) held out for test
GAP_NOTE = "posed image(s) in the gap before a held-out test stretch (in neither split)"


def check_choice(test_list: str | Path | None, test_every: int | None) -> None:
    """InputError when both are given or `test_every` is below 1."""
    if test_list is not None and test_every is not None:
        raise InputError("--test-list and --test-every both choose the test frames; give one")
    if test_every is not None and test_every < 1:
        raise InputError(f"--test-every must be at least 1, got {test_every}")


def held_out_stretches(sequences: Mapping[str, str]) -> dict[str, Role]:
    """Name -> role by the default rule above; `sequences` maps each name to its sequence."""
    groups: dict[str, list[str]] = {}
    for name in sorted(sequences):
        groups.setdefault(sequences[name], []).append(name)
    if len(groups) >= 3:
        count = max(1, round(TEST_FRACTION * len(groups)))
        held = set(sorted(groups)[-count:])
        return {n: "test" if sequences[n] in held else "train" for n in sequences}
    roles: dict[str, Role] = {}
    for names in groups.values():
        n = len(names)
        size, gap = max(1, math.ceil(TEST_FRACTION * n)), max(1, math.ceil(GAP_FRACTION * n))
        first_test = n - size if n - size - gap >= 1 else n
        for i, name in enumerate(names):
            roles[name] = "test" if i >= first_test else "gap" if i >= first_test - gap else "train"
    return roles


def every_nth(names: Iterable[str], test_every: int) -> dict[str, Role]:
    """Every `test_every`-th name in sorted order (the first, the (N+1)-th, ...) is test."""
    return {n: "test" if i % test_every == 0 else "train" for i, n in enumerate(sorted(names))}


def from_test_list(
    path: Path, names: Iterable[str], problems: Problems, synthetic: Collection[str] = ()
) -> dict[str, Role]:
    """The images listed in `path` (one per line, as the dataset names them) are test, the others
    train. A name that is no posed image, a `synthetic` one, or one listed twice, is a problem at
    its line."""
    known = set(names)
    listed: dict[str, int] = {}
    for number, text in content_lines(read_lines(path, problems) or []):
        name = text.strip()
        if name in synthetic:
            problems.add(path, f"image {name!r} is synthesised (augment.json): never a test image",
                         number)  # fmt: skip
        elif name not in known:
            problems.add(path, f"image {name!r} is not a posed image of the dataset", number)
        elif name in listed:
            first = listed[name]
            problems.add(path, f"image {name!r} listed again (first at line {first})", number)
        else:
            listed[name] = number
    return {n: "test" if n in listed else "train" for n in known}


def synthetic_names(sequences: Mapping[str, str], synthetic: Collection[str]) -> set[str]:
    """The names of `sequences` (name -> sequence) whose sequence is one of `synthetic`."""
    return {name for name, sequence in sequences.items() if sequence in synthetic}


def chosen_split(
    sequences: Mapping[str, str],
    own: dict[str, Role] | None,
    test_list: str | Path | None,
    test_every: int | None,
    problems: Problems,
    synthetic: Collection[str] = (),
) -> dict[str, Role]:
    """The role of every name of `sequences` (name -> sequence): from --test-list, else
    --test-every, else the dataset's `own` split when it has one, else held-out stretches;
    computed over the captured names only, the `synthetic` names (of augment's sequences) are
    always 'train'."""
    captured = {name: seq for name, seq in sequences.items() if name not in synthetic}
    if test_list is not None:
        roles = from_test_list(Path(test_list), captured, problems, synthetic)
    elif test_every is not None:
        roles = every_nth(captured, test_every)
    elif own is not None:
        roles = {name: role for name, role in own.items() if name in captured}
    else:
        roles = held_out_stretches(captured)
    return roles | {name: "train" for name in sequences if name in synthetic}
