"""The `geoposenet` command. Each subcommand is an `_add_<name>` parser builder plus a
`_run_<name>` handler; heavy modules are imported inside the handlers so `--help` stays fast.

Exit codes: 0 success, 2 bad input (InputError: dataset, flags, checkpoint) with a one-paragraph
message and no traceback, 1 anything else.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from geoposenet import __version__
from geoposenet.choices import (
    BACKBONE_NAMES,
    DATASET_FORMATS,
    FORMATS,
    POSE_FORMATS,
    RENDERERS,
    UNCERTAINTY_KINDS,
)
from geoposenet.errors import InputError, TrainingError, TrainingInterrupted
from geoposenet.extras import missing_extra
from geoposenet.viewsynth.limits import Limits

LIMITS = Limits()  # the pose sampler's defaults, shown by `augment --help`
# augment's flags for the pose sampler's limits: (flag, Limits field, metavar, help)
LIMIT_FLAGS = [
    ("--max-shift", "max_shift_m", "M", "metres a camera may move from a training camera"),
    ("--max-angle", "max_angle_deg", "DEG", "degrees a camera may turn"),
    ("--between", "between", "F", "share of views between two training walks"),
    ("--max-gap", "max_gap_m", "M",
     "metres at most between the two training cameras a view between walks lies between"),
    ("--max-gap-angle", "max_gap_deg", "DEG",
     "degrees at most between those two cameras' orientations"),
    ("--clearance", "clearance_m", "M", "metres kept from the scene's 3D points"),
]  # fmt: skip

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as InputError (exit 2, one message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _add_synth(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("synth", help="render the built-in synthetic scene into a dataset folder")
    p.add_argument("out", type=Path, help="output dataset folder")
    p.add_argument(
        "--preset", choices=("room", "tiny"), default="room", help="scene size (default: room)"
    )
    p.add_argument(
        "--format",
        choices=DATASET_FORMATS,
        default="cambridge",
        help="dataset layout to write (default: cambridge)",
    )
    p.add_argument("--seed", type=int, default=0, help="trajectory and texture seed (default: 0)")

    def run(args: argparse.Namespace) -> int:
        from geoposenet.synthetic import synthesize

        report = synthesize(args.out, preset=args.preset, format=args.format, seed=args.seed)
        print(report.describe())
        return 0

    return run


def _add_check(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("check", help="validate a dataset and summarise it (exit 2 on problems)")
    p.add_argument("data", type=Path, help="dataset folder")
    p.add_argument("--format", choices=FORMATS, default="auto", help="(default: auto: detected)")
    _add_dataset_flags(p)

    def run(args: argparse.Namespace) -> int:
        from geoposenet.config import dataset_options
        from geoposenet.readers import check_dataset

        report = check_dataset(args.data, format=args.format, **dataset_options(args))
        print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
        return 0 if report.ok else 2

    return run


def _add_dataset_flags(p: argparse.ArgumentParser) -> None:
    """--images, --test-list, --test-every, --scale, --scale-from: declared once, with train's."""
    from geoposenet.config import DATASET_OPTIONS, TrainConfig, shown_default
    from geoposenet.settings import add_flags

    add_flags(p, TrainConfig, shown_default, only=DATASET_OPTIONS)


def _positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _device(text: str) -> str:
    from geoposenet.devices import device_problem

    if (problem := device_problem(text)) is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def _add_compute_flags(p: argparse.ArgumentParser) -> None:
    """--device and --threads, for a command that runs a network."""
    p.add_argument(
        "--device", type=_device, default="auto", help="auto | cpu | cuda[:N] | mps (default: auto)"
    )
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads, 0: torch's default (default: 0)"
    )


def _add_uncertainty_flags(p: argparse.ArgumentParser) -> None:
    """--uncertainty and --mc-samples, for eval and predict."""
    p.add_argument(
        "--uncertainty", choices=UNCERTAINTY_KINDS, default="auto",
        help="per-image uncertainty: the aleatoric head's (a model trained with --uncertainty "
        "aleatoric), mc-dropout (T passes with the dropout before the pose layer on; the pose "
        "is their mean), none; auto: aleatoric when the model has that head, else none "
        "(default: auto)",
    )  # fmt: skip
    p.add_argument(
        "--mc-samples", type=_positive_int, default=16, metavar="T",
        help="passes of --uncertainty mc-dropout (default: 16)",
    )  # fmt: skip


def _compute_device(args: argparse.Namespace) -> Any:
    """Apply --threads; the torch device --device names."""
    from geoposenet.devices import resolve_device, set_threads

    set_threads(args.threads)
    return resolve_device(args.device)


def _add_train(sub: argparse._SubParsersAction) -> Handler:
    from geoposenet.config import TrainConfig, shown_default
    from geoposenet.settings import add_flags

    p = sub.add_parser(
        "train",
        help="train a PoseNet on a dataset",
        description="Train a PoseNet into the run folder --out. Settings come from the declared "
        "defaults, then the preset ('paper': GoogLeNet at 224 px, batch 64, learned weighting; "
        "'cpu': the same at 112 px, batch 32), then --config FILE, then the flags. Every run "
        "writes its resolved config.toml, which --config accepts back.",
    )
    p.add_argument(
        "--config", type=Path, metavar="FILE",
        help="TOML file of settings ([recipe] and [options] tables, or plain keys, as in a run's "
        "config.toml); flags override it",
    )  # fmt: skip
    p.add_argument(
        "--resume", nargs="?", const=True, metavar="RUN",
        help="continue the run RUN with its own recipe (options given again win; a different "
        "recipe setting is refused); without RUN: continue --out, or start it if it is empty",
    )  # fmt: skip
    add_flags(p, TrainConfig, shown_default)

    def run(args: argparse.Namespace) -> int:
        from geoposenet.config import SETTINGS
        from geoposenet.distributed import env_rank
        from geoposenet.runconfig import train_config
        from geoposenet.train import fit

        given = {k: v for k, v in vars(args).items() if k in SETTINGS}  # only what was set
        run_dir = Path(args.resume) if isinstance(args.resume, str) else None
        config = train_config(given, args.config, run_dir)
        run_dir = fit(config, resume=args.resume is not None)
        if env_rank() == 0:  # under torchrun, one line for the whole run
            best = run_dir / "best.pt"
            chosen = (
                f"best on the validation split: {best}"
                if best.is_file()
                else "no validation split, so no best.pt"
            )
            print(f"trained: {run_dir / 'last.pt'} ({chosen}; the test split chose nothing)")
        return 0

    return run


def _add_eval(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint: metrics.json, errors.csv, poses, plots",
        description="Evaluate a checkpoint on a dataset split. CHECKPOINT is a .pt file or a run "
        "folder (its last.pt is used and named on stderr).",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint file, or a run folder (-> last.pt)")
    p.add_argument("data", type=Path, help="dataset folder")
    p.add_argument("--split", choices=("test", "train"), default="test", help="(default: test)")
    p.add_argument("--out", type=Path, help="output folder (default: RUN/eval-SPLIT)")
    p.add_argument("--format", choices=FORMATS, default="auto", help="(default: auto: detected)")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="(default: 32)")
    _add_dataset_flags(p)
    _add_compute_flags(p)
    _add_uncertainty_flags(p)

    def run(args: argparse.Namespace) -> int:
        from geoposenet.config import dataset_options
        from geoposenet.evaluation import evaluate

        checkpoint = _checkpoint_argument(args.checkpoint)
        out = args.out or checkpoint.parent / f"eval-{args.split}"
        device = _compute_device(args)
        metrics = evaluate(
            checkpoint, args.data, args.split, out, args.format, args.batch_size, device,
            dataset_options(args), args.uncertainty, args.mc_samples,
        )  # fmt: skip
        print(
            f"{metrics['num_frames']} {args.split} frames: median "
            f"{metrics['median_position_error_m']:.3f} {metrics['position_unit']}, "
            f"{metrics['median_rotation_error_deg']:.2f} deg; written to {out}"
        )
        if (block := metrics.get("uncertainty")) is not None:
            print(_uncertainty_line(block))
        return 0

    return run


def _uncertainty_line(block: dict[str, Any]) -> str:
    """One line on the uncertainty block of metrics.json: Spearman and the 80% medians."""

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    position, rotation = block["position"], block["rotation"]
    calibration = "calibrated on validation" if block["calibrated"] else "uncalibrated"
    return (
        f"{block['kind']} uncertainty ({calibration}): Spearman with the error "
        f"{shown(position['spearman'])} (position), {shown(rotation['spearman'])} (rotation); "
        f"median position error of the 80% most certain frames "
        f"{position['median_error_most_certain_80']:.3f}, of all {position['median_error_all']:.3f}"
    )


def _add_predict(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "predict",
        help="poses of images, in the scene's coordinates",
        description="Write the pose of every image: --format csv (camera centre x y z, world -> "
        "camera quaternion qw qx qy qz with qw >= 0, after a '#' line saying so), json, or "
        "colmap (the hloc / visual localisation benchmark pose file: name qw qx qy qz tx ty tz, "
        "COLMAP's cam_from_world). IMAGE is a file, a folder (its .png/.jpg/.jpeg files, sorted "
        "by name) or a quoted glob pattern such as 'imgs/*.png'. MODEL is a .pt checkpoint, a "
        "run folder (its last.pt is used and named on stderr) or an exported .onnx file (run "
        "by onnxruntime on the CPU). With an uncertainty (the aleatoric head's by default, or "
        "--uncertainty mc-dropout), csv and json also give each pose's position_uncertainty_m "
        "and rotation_uncertainty_deg: the median error to expect, calibrated on the validation "
        "split (or raw, said so, without one); the colmap format has no place for it.",
    )
    p.add_argument("model", type=Path, help="checkpoint, run folder (-> last.pt) or .onnx file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image file, folder or glob")
    p.add_argument("--format", choices=POSE_FORMATS, default="csv", help="(default: csv)")
    p.add_argument(
        "--out", type=Path, metavar="FILE", help="write FILE, atomically (default: stdout)"
    )
    _add_compute_flags(p)
    _add_uncertainty_flags(p)

    def run(args: argparse.Namespace) -> int:
        from geoposenet.cache import atomic_write_text
        from geoposenet.models import image_files
        from geoposenet.poseformats import format_poses

        if args.out is not None and args.out.is_dir():
            raise InputError(f"{args.out}: is a folder; --out names the file to write")
        model = _pose_model(args)
        images = image_files(args.images)
        poses = model.predict(images, uncertainty=args.uncertainty, samples=args.mc_samples)
        if poses.uncertainty is not None and args.format == "colmap":
            print(
                "note: the colmap format has no place for the uncertainty; "
                "--format csv or json gives it",
                file=sys.stderr,
            )
        names = [str(p) for p in images]
        text = format_poses(
            args.format, names, poses.positions, poses.quaternions, poses.uncertainty
        )
        if args.out is None:
            sys.stdout.write(text)
        else:
            atomic_write_text(args.out, text)
        return 0

    return run


def _pose_model(args: argparse.Namespace) -> Any:
    """What `predict`'s MODEL argument names, ready to `.predict(images)`: an OnnxPoseNet for an
    .onnx file, else a PoseNet from the checkpoint on --device."""
    if args.model.suffix.lower() == ".onnx":
        from geoposenet.export import OnnxPoseNet

        return OnnxPoseNet(args.model)
    from geoposenet.models import PoseNet

    device = _compute_device(args)
    return PoseNet.from_checkpoint(_checkpoint_argument(args.model), device)


def _add_export(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX (checked with onnxruntime)",
        description="Export a checkpoint to ONNX and check it against the checkpoint with "
        "onnxruntime (see geoposenet.export for its inputs, outputs and metadata). CHECKPOINT is "
        "a .pt file or a run folder (its last.pt is used and named on stderr); OUT is the .onnx "
        "file to write, in an existing folder.",
    )
    p.add_argument("checkpoint", type=Path, help="checkpoint file, or a run folder (-> last.pt)")
    p.add_argument("out", help="output .onnx file (its folder must exist)")
    _add_compute_flags(p)

    def run(args: argparse.Namespace) -> int:
        from geoposenet.export import export_onnx

        device = _compute_device(args)
        difference = export_onnx(_checkpoint_argument(args.checkpoint), args.out, device=device)
        print(f"wrote {args.out}; onnxruntime matches torch (max difference {difference:.2e})")
        return 0

    return run


def _checkpoint_argument(path: Path) -> Path:
    """The checkpoint file a CHECKPOINT argument names (a run folder -> its last.pt, said on
    stderr so stdout stays the command's output)."""
    from geoposenet.checkpoint import checkpoint_file

    checkpoint = checkpoint_file(path)
    if checkpoint != path:
        print(f"using {checkpoint}", file=sys.stderr)
    return checkpoint


def _add_demo(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "demo", help="synthetic room -> train -> fine-tune with reprojection -> evaluate -> report"
    )
    p.add_argument("--out", type=Path, default=Path("demo_run"), help="(default: demo_run)")
    p.add_argument("--backbone", choices=BACKBONE_NAMES, default="efficientnet_lite0",
                   help="(default: efficientnet_lite0)")  # fmt: skip
    p.add_argument("--pretrained", default="imagenet", help="imagenet | none | FILE "
                   "(default: imagenet)")  # fmt: skip
    p.add_argument("--preset", choices=("room", "tiny"), default="room",
                   help="synthetic scene (default: room)")  # fmt: skip
    _add_compute_flags(p)

    def run(args: argparse.Namespace) -> int:
        from geoposenet.demo import run_demo

        run_demo(args.out, args.backbone, args.pretrained, args.preset, device=args.device,
                 threads=args.threads)  # fmt: skip
        return 0

    return run


def _add_augment(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser(
        "augment",
        help="DATA plus views rendered at new poses, written as a dataset in DATA's format",
        description="Write a copy of DATA (7-Scenes, Cambridge, COLMAP or nerfstudio; files "
        "hard-linked where possible, DATA never changed) whose training split also holds N "
        "views rendered at new poses near the training cameras, in their own sequences "
        "(synthetic-1, ...; 7-Scenes seq-901, ...; listed in AUG/augment.json); the test split "
        "is DATA's, also when it is implicit (COLMAP, nerfstudio: the split is computed over "
        "the captured images only, synthesised ones are always training images). The dataset "
        "flags (--images, --test-list, --test-every, --scale, --scale-from) read DATA as train "
        "and check do, and read AUG the same way: give them again to train on AUG, e.g. "
        "`geoposenet train AUG --scale S` for `augment DATA --scale S`. With a scale, "
        "--max-shift and --clearance are metres and the new poses are written in DATA's own "
        "units; without one, COLMAP and nerfstudio positions (so those limits) are in model "
        "units. --images must be a folder inside DATA, given relative to it (AUG gets its own "
        "copy, where the synthesised images go).",
    )
    p.add_argument(
        "data", type=Path, help="dataset folder (7-Scenes, Cambridge, COLMAP or nerfstudio)"
    )
    p.add_argument("--out", type=Path, required=True, help="new dataset folder (empty or new)")
    p.add_argument("--views", type=int, default=1000, help="views to synthesise (default: 1000)")
    p.add_argument(
        "--renderer", choices=RENDERERS, default="auto",
        help="exact: the built-in room's ray caster; depth: fuse 7-Scenes colour + depth and "
        "render the points; rotation: turn training cameras about their centre (homography, any "
        "scene); auto: exact for the room, else depth when there are depth maps, else rotation "
        "(default: auto)",
    )  # fmt: skip
    for flag, field, metavar, what in LIMIT_FLAGS:
        default = getattr(LIMITS, field)
        p.add_argument(flag, type=float, default=default, metavar=metavar, dest=field,
                       help=f"{what} (default: {default:g})")  # fmt: skip
    p.add_argument("--min-coverage", type=float, default=0.7, metavar="F",
                   help="redraw views with a smaller share of rendered pixels "
                   "(default: 0.7)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="pose sampling seed (default: 0)")
    p.add_argument(
        "--threads", type=int, default=0,
        help="rendering threads, each with one torch thread; the output does not depend on it "
        "(default: 0, torch's thread count: the cores)",
    )  # fmt: skip
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: one on a terminal)"
    )
    _add_dataset_flags(p)

    def run(args: argparse.Namespace) -> int:
        from dataclasses import replace

        from geoposenet.config import dataset_options
        from geoposenet.viewsynth.augment import augment

        try:
            limits = replace(
                LIMITS, **{field: getattr(args, field) for _, field, *_ in LIMIT_FLAGS}
            )
        except ValueError as error:
            raise InputError(f"augment: {error}") from None
        report = augment(
            args.data, args.out, args.views, args.renderer, limits, args.seed,
            args.min_coverage, progress=not args.no_progress, options=dataset_options(args),
            threads=args.threads,
        )  # fmt: skip
        print(report.describe())
        return 0

    return run


def _add_download(sub: argparse._SubParsersAction) -> Handler:
    from geoposenet.catalog import ARCHIVES, URL_BASE_VARIABLE

    p = sub.add_parser(
        "download",
        help="download a Cambridge Landmarks or 7-Scenes scene, ready for check and train",
        description="Download the scene NAME into DIR/NAME, unpacked in the layout the readers "
        "expect. The archive goes to DIR/NAME.zip.part first: an interrupted download resumes "
        "when run again. Its size (and SHA-256 where one is known) is checked, then it is "
        "unpacked and deleted.",
    )
    p.add_argument("name", choices=tuple(ARCHIVES), metavar="NAME", help=", ".join(ARCHIVES))
    p.add_argument("dir", type=Path, metavar="DIR", help="folder to put the scene folder in")
    p.add_argument(
        "--url-base", metavar="URL",
        help=f"a mirror holding NAME.zip (default: ${URL_BASE_VARIABLE}, else the official host)",
    )  # fmt: skip
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (default: one on a terminal)"
    )

    def run(args: argparse.Namespace) -> int:
        from geoposenet.download import download

        target = download(args.name, args.dir, args.url_base, progress=not args.no_progress)
        print(f"{args.name}: {target} (check it with: geoposenet check {target})")
        return 0

    return run


COMMANDS: tuple[Callable[[argparse._SubParsersAction], Handler], ...] = (
    _add_demo,
    _add_synth,
    _add_augment,
    _add_check,
    _add_train,
    _add_eval,
    _add_predict,
    _add_export,
    _add_download,
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The top-level parser and a map from subcommand name to handler."""
    parser = _Parser(
        prog="geoposenet",
        description="Absolute camera pose regression (PoseNet) with geometric loss functions.",
    )
    parser.add_argument("--version", action="version", version=f"geoposenet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    handlers: dict[str, Handler] = {}
    for add in COMMANDS:
        before = set(sub.choices)
        handler = add(sub)
        (name,) = set(sub.choices) - before
        handlers[name] = handler
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `geoposenet` console script; returns the exit code."""
    parser, handlers = build_parser()
    try:
        args = parser.parse_args(argv)
        return handlers[args.command](args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ImportError as error:  # an optional dependency: name its extra
        if (message := missing_extra(error)) is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    except TrainingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except TrainingInterrupted as stopped:
        print(stopped, file=sys.stderr)
        return 128 + stopped.signum if stopped.signum in (signal.SIGINT, signal.SIGTERM) else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `geoposenet predict ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
