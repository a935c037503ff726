"""The `geoposenet` command. Each subcommand is an `_add_<name>` parser builder plus a
`_run_<name>` handler; heavy modules are imported inside the handlers so `--help` stays fast.

Exit codes: 0 success, 2 bad input (InputError: dataset, flags, checkpoint) with a one-paragraph
message and no traceback, 1 anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from geoposenet.errors import InputError

Handler = Callable[[argparse.Namespace], int]
FORMATS = ("auto", "cambridge", "7scenes", "colmap")


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as InputError (exit 2, one message)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _add_synth(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("synth", help="render the built-in synthetic scene into a dataset folder")
    p.add_argument("out", type=Path, help="output dataset folder")
    p.add_argument("--preset", choices=("room", "tiny"), default="room")
    p.add_argument("--format", choices=FORMATS[1:], default="cambridge")
    p.add_argument("--seed", type=int, default=0)

    def run(args: argparse.Namespace) -> int:
        from geoposenet.synthetic import synthesize

        report = synthesize(args.out, preset=args.preset, format=args.format, seed=args.seed)
        print(report.describe())
        return 0

    return run


def _add_check(sub: argparse._SubParsersAction) -> Handler:
    p = sub.add_parser("check", help="validate a dataset and summarise it (exit 2 on problems)")
    p.add_argument("data", type=Path, help="dataset folder")
    p.add_argument("--format", choices=FORMATS, default="auto")

    def run(args: argparse.Namespace) -> int:
        from geoposenet.readers import check_dataset

        report = check_dataset(args.data, format=args.format)
        print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
        return 0 if report.ok else 2

    return run


COMMANDS: tuple[Callable[[argparse._SubParsersAction], Handler], ...] = (_add_synth, _add_check)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    """The top-level parser and a map from subcommand name to handler."""
    parser = _Parser(
        prog="geoposenet",
        description="Absolute camera pose regression (PoseNet) with geometric loss functions.",
    )
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
