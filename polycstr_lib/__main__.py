"""Command line: ``python -m polycstr_lib {data,notebooks,book} --help``."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from polycstr_lib.scenarios import SCENARIOS


def _cmd_data(args: argparse.Namespace) -> int:
    from polycstr_lib.datasets import DatasetConfig, ensure_dataset

    for name in args.scenario or list(SCENARIOS):
        start = time.perf_counter()
        config = DatasetConfig(name, episodes=args.episodes, seed=args.seed)
        path, generated = ensure_dataset(name, regenerate=args.regenerate, config=config)
        verb = "generated" if generated else "valid, kept"
        print(f"[data] {name}: {verb} {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from polycstr_lib.pipeline import execute_notebooks

    for page, seconds in execute_notebooks(args.profile, only=args.only):
        print(f"[book] {page}: {seconds:.1f} s")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from polycstr_lib.pipeline import REPO_ROOT

    _cmd_notebooks(args)
    cmd = [
        sys.executable,
        "-m",
        "jupyter_book",
        "build",
        str(REPO_ROOT),
        "--warningiserror",
        "--keep-going",
    ]
    return subprocess.call(cmd)


def _scenario(value: str) -> str:
    if value not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {value!r}; choose from {', '.join(SCENARIOS)}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m polycstr_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate the PI datasets (skips valid ones)")
    data.add_argument(
        "--scenario",
        type=_scenario,
        action="append",
        help="scenario (repeatable; default: all three)",
    )
    data.add_argument("--episodes", type=int, default=100, help="episodes per dataset")
    data.add_argument("--seed", type=int, default=0, help="generation seed")
    data.add_argument("--regenerate", action="store_true", help="regenerate even if valid")
    data.set_defaults(func=_cmd_data)

    for name, func, text in (
        ("notebooks", _cmd_notebooks, "execute the notebooks into book/executed/"),
        ("book", _cmd_book, "execute the notebooks and build the book into _build/html"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--profile",
            default="quick",
            choices=["quick", "paper"],
            help="parameter profile (default: quick)",
        )
        p.add_argument("--only", action="append", help="page stem to execute (repeatable)")
        p.set_defaults(func=func)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "episodes", 1) < 1:
        build_parser().error("--episodes must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
