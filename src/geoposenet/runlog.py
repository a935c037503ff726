"""What a run reports: log.jsonl (one JSON record per epoch, appended atomically), TensorBoard
events when tensorboard is installed, one summary line per epoch on stdout, and a closing table.

A record: epoch (0-based), step, lr (the learning rate of the epoch's first step), time_s,
images_per_s, train (mean loss parts), and "val"/"test" medians when evaluated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geoposenet.cache import atomic_write_text

LOG = "log.jsonl"
MEDIANS = ("median_position_error_m", "median_rotation_error_deg")


def read_records(run: Path) -> list[dict[str, Any]]:
    path = run / LOG
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def append_record(run: Path, record: dict[str, Any]) -> None:
    """Append one record atomically (a killed process leaves no partial line)."""
    path = run / LOG
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, before + json.dumps(record) + "\n")


def truncate_log(run: Path, epoch: int) -> None:
    """Drop records of epochs >= `epoch` (they are trained again after a resume)."""
    if (run / LOG).exists():
        kept = [r for r in read_records(run) if r.get("epoch", 0) < epoch]
        atomic_write_text(run / LOG, "".join(json.dumps(r) + "\n" for r in kept))


def summary_line(record: dict[str, Any], epochs: int, unit: str = "m") -> str:
    """One line per epoch: loss and parts, s_x/s_q, lr, images/s, validation/test medians
    (positions in `unit`: "m", or "model units" for an unscaled reconstruction)."""
    train = dict(record["train"])
    text = f"epoch {record['epoch'] + 1}/{epochs}: loss {train.pop('loss', float('nan')):.4g}"
    weights = {k: train.pop(k) for k in ("s_x", "s_q") if k in train}
    text += " (" + ", ".join(f"{k} {v:.4g}" for k, v in train.items()) + ")"
    text += "".join(f", {k} {v:.3f}" for k, v in weights.items())
    text += f", lr {record['lr']:.3g}, {record['images_per_s']:.1f} images/s"
    for split in ("val", "test"):
        if split in record:
            medians = record[split]
            text += (
                f"; {split} {medians['median_position_error_m']:.3f} {unit}, "
                f"{medians['median_rotation_error_deg']:.2f} deg"
            )
    return text


def final_table(run: Path, unit: str = "m") -> str:
    """The closing summary: best epoch (on validation), last validation and test medians
    (positions in `unit`), files."""
    records = read_records(run)
    evaluated = [r for r in records if "test" in r or "val" in r]
    lines = [
        "",
        f"| epoch | split | median position ({unit}) | median rotation (deg) |",
        "|---|---|---|---|",
    ]
    chosen = [r for r in evaluated if "val" in r]
    best = min(chosen, key=lambda r: r["val"]["median_position_error_m"], default=None)
    rows = [("best", best)] if best is not None else []
    rows += [("last", evaluated[-1])] if evaluated else []
    for name, record in rows:
        for split in ("val", "test"):
            if split in record:
                m = record[split]
                lines.append(
                    f"| {record['epoch'] + 1} ({name}) | {split} | "
                    f"{m['median_position_error_m']:.3f} | {m['median_rotation_error_deg']:.2f} |"
                )
    files = [run / name for name in ("last.pt", "best.pt", LOG, "config.toml")]
    lines.append("files: " + ", ".join(str(f) for f in files if f.exists()))
    return "\n".join(lines)


class Tensorboard:
    """TensorBoard scalars of every record, when the optional tensorboard package is there."""

    def __init__(self, run: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            self.writer = None
        else:
            self.writer = SummaryWriter(str(run / "tensorboard"))

    def add(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in record["train"].items():
            self.writer.add_scalar(f"train/{key}", value, record["epoch"])
        for split in ("val", "test"):
            for key, value in record.get(split, {}).items():
                self.writer.add_scalar(f"{split}/{key}", value, record["epoch"])
        self.writer.add_scalar("lr", record["lr"], record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
