"""Plots and report.md of an evaluation: top-down trajectory, error CDFs, training curves, and
for a per-image uncertainty its sparsification and calibration plots.

Figures are built with `matplotlib.figure.Figure` (no pyplot, no global state) and written
atomically as PNG. Positions are in the dataset's coordinates (metres, or "model units" for an
unscaled reconstruction: axis labels and tables name the unit), rotations in degrees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import patheffects, ticker
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from geoposenet.cache import atomic_write, atomic_write_text
from geoposenet.metrics import FrameErrors
from geoposenet.scene import METRES, Scene

AXIS_NAMES = ("x", "y", "z")


def save_figure(fig: Figure, path: Path, dpi: int = 120) -> None:
    """Write `fig` as a PNG atomically."""

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=dpi)

    atomic_write(Path(path), write)


def ground_axes(centres: np.ndarray) -> tuple[int, int]:
    """The two axes spanning the ground plane: all but the one of least spread (the 'up' axis)."""
    spread = np.var(np.asarray(centres, dtype=np.float64).reshape(-1, 3), axis=0)
    up = int(np.argmin(spread)) if np.isfinite(spread).all() else 2
    first, second = (a for a in range(3) if a != up)
    return first, second


def plot_trajectory(
    scene: Scene, errors: FrameErrors, path: Path, title: str | None = None
) -> None:
    """Top-down view of the ground plane: training cameras (grey), test ground truth (one line
    per sequence), predictions (dots in the sequence's colour) and error lines between them."""
    centres = scene.centres if len(scene.frames) else errors.true_position
    a, b = ground_axes(centres)
    fig = Figure(figsize=(9.0, 6.5), layout="constrained")
    ax = fig.add_subplot()
    train = np.array([f.centre for f in scene.split("train")]).reshape(-1, 3)
    handles: list[Any] = []
    if len(train):
        grey = float(np.clip(3000.0 / len(train), 4.0, 12.0))
        handles.append(ax.scatter(train[:, a], train[:, b], s=grey, c="0.75", lw=0,
                                  label="training cameras", zorder=1))  # fmt: skip
    truth, pred = errors.true_position, errors.position
    n = max(len(truth), 1)
    size, alpha = float(np.clip(3000.0 / n, 3.0, 14.0)), float(np.clip(8.0 / np.sqrt(n), 0.12, 0.4))
    edge = 0.3 if n <= 500 else 0.0
    outline = [patheffects.withStroke(linewidth=3.4, foreground="white")]
    sequences = np.asarray(errors.sequences)
    for k, seq in enumerate(sorted(set(errors.sequences))):
        colour = f"C{k % 10}"
        idx = np.flatnonzero(sequences == seq)
        segments = np.stack([truth[idx][:, [a, b]], pred[idx][:, [a, b]]], axis=1)
        ax.add_collection(LineCollection(list(segments), colors=colour, linewidths=0.6,
                                         alpha=alpha, zorder=2))  # fmt: skip
        ax.scatter(pred[idx, a], pred[idx, b], s=size, color=colour, edgecolors="black",
                   linewidths=edge, alpha=0.9, zorder=3)  # fmt: skip
        (line,) = ax.plot(truth[idx, a], truth[idx, b], color=colour, lw=1.8, zorder=4,
                          path_effects=outline, label=f"{seq} ground truth")  # fmt: skip
        handles.append(line)
    handles.append(Line2D([], [], ls="", marker="o", color="0.45", mec="black", mew=0.3,
                          label="predictions (colour of sequence)"))  # fmt: skip
    handles.append(Line2D([], [], color="0.45", lw=0.8, alpha=0.6, label="error (truth → pred.)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9,
              frameon=False)  # fmt: skip
    ax.set_aspect("equal", adjustable="datalim")
    unit = scene.position_unit
    ax.set_xlabel(f"{AXIS_NAMES[a]} ({unit})")
    ax.set_ylabel(f"{AXIS_NAMES[b]} ({unit})")
    ax.grid(True, color="0.92", lw=0.6)
    ax.set_axisbelow(True)
    pos, rot = np.median(errors.position_error_m), np.median(errors.rotation_error_deg)
    ax.set_title(title or f"{scene.name}: top-down view, median error {pos:.2f} {unit}, {rot:.1f}°")
    save_figure(fig, path)


def _cdf_panel(ax: Axes, curves: Sequence[tuple[str, np.ndarray]], unit: str, name: str) -> None:
    upper = 0.0
    for k, (label, values) in enumerate(curves):
        values = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
        if not len(values):
            continue
        colour = f"C{k % 10}"
        share = np.arange(1, len(values) + 1) / len(values)
        median = float(np.median(values))
        text = f"median {median:.2f}{unit if unit == '°' else ' ' + unit}"
        ax.step(np.r_[0.0, values], np.r_[0.0, share], where="post", color=colour, lw=1.8,
                label=f"{label} ({text})" if label else text)  # fmt: skip
        ax.axvline(median, color=colour, ls="--", lw=1.0)
        upper = max(upper, float(np.percentile(values, 99)))
    ax.axhline(0.5, color="0.7", lw=0.6, ls=":")
    ax.set_xlim(0.0, upper * 1.08 if upper > 0 else 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel(f"{name} error ({unit})")
    ax.set_ylabel("fraction of frames")
    ax.grid(True, color="0.92", lw=0.6)
    # below the panel: long stage names would cover the curves inside it
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=8)


def plot_cdf(
    curves: Sequence[tuple[str, FrameErrors]],
    path: Path,
    title: str | None = None,
    unit: str = METRES,
) -> None:
    """Cumulative distributions of position (in `unit`) and rotation (deg) error, one curve per
    (label, errors) pair, with dashed lines at the medians (x-axis up to the 99th percentile)."""
    fig = Figure(figsize=(11.0, 4.3 + 0.22 * len(curves)), layout="constrained")
    left, right = fig.subplots(1, 2)
    _cdf_panel(left, [(label, e.position_error_m) for label, e in curves], unit, "position")
    _cdf_panel(right, [(label, e.rotation_error_deg) for label, e in curves], "°", "rotation")
    fig.suptitle(title or "Cumulative distribution of the pose errors")
    save_figure(fig, path)


def _sparsification_panel(ax: Axes, quality: dict[str, Any], unit: str, name: str) -> None:
    curves = quality["sparsification"]
    removed = 100 * np.asarray(curves["removed"])
    ax.plot(removed, curves["curve"], "o-", color="C0", lw=1.6, ms=3,
            label=f"by predicted uncertainty (AUSE {curves['ause']:.3g})")  # fmt: skip
    ax.plot(removed, curves["oracle"], "s--", color="0.4", lw=1.2, ms=3,
            label="oracle: by true error")  # fmt: skip
    ax.fill_between(removed, curves["oracle"], curves["curve"], color="C0", alpha=0.12)
    ax.set_xlabel("most uncertain frames removed (%)")
    ax.set_ylabel(f"median {name} error of the rest ({unit})")
    rho = quality["spearman"]
    ax.set_title(f"{name}: Spearman {'n/a' if rho is None else f'{rho:.2f}'}")
    ax.grid(True, color="0.92", lw=0.6)
    ax.legend(fontsize=8)


def _calibration_panel(ax: Axes, quality: dict[str, Any], unit: str, name: str) -> None:
    bins = quality["calibration_bins"]
    predicted = [b["predicted"] for b in bins]
    observed = [b["observed"] for b in bins]
    upper = max([*predicted, *observed, 1e-9]) * 1.08
    ax.plot([0, upper], [0, upper], color="0.6", lw=1.0, ls=":", label="calibrated")
    ax.plot(predicted, observed, "o-", color="C3", lw=1.6, ms=4,
            label=f"{len(bins)} bins of equal frame count")  # fmt: skip
    ax.set_xlim(0, upper)
    ax.set_ylim(0, upper)
    ax.set_xlabel(f"predicted {name} uncertainty, bin median ({unit})")
    ax.set_ylabel(f"observed {name} error, bin median ({unit})")
    ax.set_title(f"{name}: calibration")
    ax.grid(True, color="0.92", lw=0.6)
    ax.legend(fontsize=8)


def plot_uncertainty(block: dict[str, Any], path: Path, unit: str = METRES) -> None:
    """The uncertainty block of metrics.json as 2 x 2 panels: sparsification curves against
    their oracle (top) and calibration by bins (bottom), position (in `unit`) and rotation."""
    fig = Figure(figsize=(11.0, 8.0), layout="constrained")
    axes = fig.subplots(2, 2)
    for column, (name, quantity_unit) in enumerate((("position", unit), ("rotation", "°"))):
        _sparsification_panel(axes[0, column], block[name], quantity_unit, name)
        _calibration_panel(axes[1, column], block[name], quantity_unit, name)
    state = "calibrated on the validation split" if block["calibrated"] else "uncalibrated"
    fig.suptitle(f"{block['kind']} uncertainty ({state})")
    save_figure(fig, path)


def uncertainty_table(block: dict[str, Any], unit: str = METRES) -> str:
    """Markdown table of the uncertainty's figures, position and rotation side by side."""

    def number(value: float | None, digits: int, factor: float = 1.0, suffix: str = "") -> str:
        return "n/a" if value is None else f"{factor * value:.{digits}f}{suffix}"

    p, r = block["position"], block["rotation"]
    rows = [
        ("Spearman correlation with the error", number(p["spearman"], 3),
         number(r["spearman"], 3)),
        ("median error, all frames", f"{p['median_error_all']:.3f} {unit}",
         f"{r['median_error_all']:.2f}°"),
        ("median error, 80% most certain frames",
         f"{p['median_error_most_certain_80']:.3f} {unit}",
         f"{r['median_error_most_certain_80']:.2f}°"),
        ("reduction", number(p["reduction_most_certain_80"], 1, 100, " %"),
         number(r["reduction_most_certain_80"], 1, 100, " %")),
        ("AUSE (area between sparsification and oracle)",
         f"{p['sparsification']['ause']:.3f} {unit}", f"{r['sparsification']['ause']:.2f}°"),
        ("median predicted uncertainty", f"{p['median_uncertainty']:.3f} {unit}",
         f"{r['median_uncertainty']:.2f}°"),
    ]  # fmt: skip
    lines = ["| figure | position | rotation |", "|---|---|---|"]
    return "\n".join(lines + [f"| {name} | {a} | {b} |" for name, a, b in rows])


def read_log(log_path: Path) -> list[dict[str, Any]]:
    """The entries of a JSON-lines training log (blank or unreadable lines are skipped)."""
    entries = []
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def _series(entries: list[dict[str, Any]], group: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, entry in enumerate(entries):
        value = (entry.get(group) or {}).get(key)
        if isinstance(value, (int, float)) and np.isfinite(value):
            epoch = entry.get("epoch")
            xs.append(float(epoch) if isinstance(epoch, (int, float)) else float(i))
            ys.append(float(value))
    return xs, ys


class _PlainLogFormatter(ticker.LogFormatter):
    """Log-axis labels as plain numbers (0.3, 2) on the ticks matplotlib chooses to label."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def plot_training(log_path: Path, out_png: Path, unit: str = METRES) -> bool:
    """Training curves from the trainer's JSON-lines log: loss, its parts (log scale), s_x/s_q
    when logged, and validation and test median errors (positions in `unit`) when logged (solid
    and dashed). Returns False (nothing written) when the log is missing or holds no training
    entries."""
    if not Path(log_path).is_file():
        return False
    entries = read_log(log_path)
    loss = _series(entries, "train", "loss")
    parts = {k: _series(entries, "train", k) for k in ("position", "orientation", "reprojection")}
    weights = {k: _series(entries, "train", k) for k in ("s_x", "s_q")}
    keys = ("median_position_error_m", "median_rotation_error_deg")
    evals = {split: [_series(entries, split, k) for k in keys] for split in ("val", "test")}
    evals = {split: series for split, series in evals.items() if series[0][0]}
    panels = ["loss"] if loss[0] else []
    panels += ["parts"] if any(x for x, _ in parts.values()) else []
    panels += ["weights"] if any(x for x, _ in weights.values()) else []
    panels += ["eval"] if evals else []
    if not panels:
        return False
    rows, cols = (len(panels) + 1) // 2, min(len(panels), 2)
    fig = Figure(figsize=(5.5 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        if panel == "loss":
            ax.plot(*loss, color="C0", lw=1.6)
            ax.set_title("training loss")
        elif panel == "parts":
            for k, (name, series) in enumerate(parts.items()):
                if series[0]:
                    ax.plot(*series, color=f"C{k + 1}", lw=1.6, label=name)
            ax.set_yscale("log")
            for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                axis(_PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
            ax.set_title("loss parts (log scale)")
            ax.legend(fontsize=9)
        elif panel == "weights":
            for name, series in weights.items():
                if series[0]:
                    ax.plot(*series, lw=1.6, label=name, color="C4" if name == "s_x" else "C5")
            ax.set_title("learned weights s_x, s_q")
            ax.legend(fontsize=9)
        else:
            twin = ax.twinx()
            for split, (position, rotation) in evals.items():
                style = "-" if split == "val" else "--"
                ax.plot(*position, "o" + style, color="C0", lw=1.6, ms=4, label=f"{split} position")
                twin.plot(
                    *rotation, "s" + style, color="C3", lw=1.6, ms=4, label=f"{split} rotation"
                )
            ax.set_ylabel(f"median position error ({unit})", color="C0")
            twin.set_ylabel("median rotation error (°)", color="C3")
            lines = ax.get_lines() + twin.get_lines()
            ax.legend(lines, [str(line.get_label()) for line in lines], fontsize=9)
            ax.set_title(" and ".join(evals) + " median errors")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        ax.grid(True, color="0.92", lw=0.6)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    seconds = [e["time_s"] for e in entries if isinstance(e.get("time_s"), (int, float))]
    duration = f", {sum(seconds):.0f} s of training steps" if seconds else ""  # time_s: per epoch
    epochs = {e["epoch"] for e in entries if isinstance(e.get("epoch"), int)}
    count = f"{len(epochs)} epochs" if epochs else f"{len(entries)} entries"
    fig.suptitle(f"Training log: {count}{duration}")
    save_figure(fig, out_png)
    return True


def metrics_table(metrics: dict[str, Any]) -> str:
    """Markdown table of the medians, means and accuracy thresholds (positions in the metrics'
    `position_unit`, metres when absent)."""
    unit = metrics.get("position_unit", METRES)
    rows = [
        ("median position error", f"{metrics['median_position_error_m']:.3f} {unit}"),
        ("median rotation error", f"{metrics['median_rotation_error_deg']:.2f}°"),
        ("mean position error", f"{metrics['mean_position_error_m']:.3f} {unit}"),
        ("mean rotation error", f"{metrics['mean_rotation_error_deg']:.2f}°"),
    ]
    rows += [
        ("within " + re.sub(r"^([0-9.]+)m_([0-9.]+)deg$", rf"\1 {unit}, \2°", key),
         f"{100 * v:.1f} %")
        for key, v in metrics.get("accuracy", {}).items()
    ]  # fmt: skip
    return "\n".join(["| metric | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)])


def sequence_table(metrics: dict[str, Any]) -> str:
    """Markdown table of the per-sequence frame counts and medians."""
    unit = metrics.get("position_unit", METRES)
    lines = [f"| sequence | frames | median position ({unit}) | median rotation (°) |",
             "|---|---|---|---|"]  # fmt: skip
    for seq, m in metrics.get("per_sequence", {}).items():
        lines.append(f"| {seq} | {m['num_frames']} | {m['median_position_error_m']:.3f} "
                     f"| {m['median_rotation_error_deg']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def write_report(
    folder: Path, scene: Scene, errors: FrameErrors, metrics: dict[str, Any], log_path: Path
) -> None:
    """Write trajectory.png, cdf.png, training.png (when `log_path` holds a log),
    uncertainty.png (when the metrics hold an uncertainty block) and report.md."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    split = metrics.get("split", "test")
    plot_trajectory(scene, errors, folder / "trajectory.png")
    unit = scene.position_unit
    plot_cdf([("", errors)], folder / "cdf.png", unit=unit)
    if not (trained := plot_training(Path(log_path), folder / "training.png", unit)):
        (folder / "training.png").unlink(missing_ok=True)
    a, b = ground_axes(scene.centres if len(scene.frames) else errors.true_position)
    counts = {s: len(scene.split(s)) for s in ("train", "test")}
    sequences = sorted(set(errors.sequences))
    lines = [
        f"# Pose regression evaluation: {scene.name}",
        "",
        f"- Scene: `{scene.name}` ({scene.format} format) at `{scene.root}`",
        f"- Split evaluated: **{split}**, {metrics['num_frames']} frames in {len(sequences)} "
        f"sequence(s): {', '.join(sequences)}",
        f"- Scene frames: {counts['train']} training, {counts['test']} test",
        f"- Positions in {unit}"
        + (" (no scale given: --scale or --scale-from)" if unit != METRES else ""),
    ]
    if "checkpoint" in metrics:
        lines.append(f"- Checkpoint: `{metrics['checkpoint']}`")
    lines += ["", "## Metrics", "", metrics_table(metrics), ""]
    if metrics.get("per_sequence"):
        lines += ["## Per sequence", "", sequence_table(metrics), ""]
    lines += [
        "## Trajectory", "", "![trajectory](trajectory.png)", "",
        f"Top-down view ({AXIS_NAMES[a]}–{AXIS_NAMES[b]} plane): training cameras in grey, "
        "ground truth as lines, predictions as dots, thin lines join each frame to its prediction.",
        "", "## Error distribution", "", "![error CDFs](cdf.png)", "",
        "Share of frames with position (left) and rotation (right) error below a value; "
        "dashed lines mark the medians.",
        "", "## Training", "",
    ]  # fmt: skip
    if trained:
        lines += ["![training curves](training.png)", "",
                  f"Training loss, its parts (and s_x/s_q, test medians when logged) per epoch, "
                  f"from `{log_path}`."]  # fmt: skip
    else:
        lines.append(f"No training log entries at `{log_path}`; training curves skipped.")
    block = metrics.get("uncertainty")
    if block is None:
        (folder / "uncertainty.png").unlink(missing_ok=True)
    else:
        plot_uncertainty(block, folder / "uncertainty.png", unit)
        state = (
            "calibrated on the validation split: a value is the median error to expect"
            if block["calibrated"]
            else "**uncalibrated** (no validation split): only the order of the values counts"
        )
        lines += [
            "", "## Uncertainty", "",
            f"Per-frame {block['kind']} uncertainty, {state}.", "",
            uncertainty_table(block, unit), "",
            "![sparsification and calibration](uncertainty.png)", "",
            "Top: median error of the frames kept as the most uncertain are removed, against "
            "the oracle that removes the largest true errors first (the shaded area is AUSE). "
            "Bottom: frames in bins of predicted uncertainty, median predicted against median "
            "observed error; a calibrated uncertainty lies on the dotted diagonal.",
        ]  # fmt: skip
    text = "\n".join(lines) + "\n"
    atomic_write_text(folder / "report.md", text)
