"""Command line: ``python -m polycstr_lib <command> --help``.

Commands: data, train, evaluate, notebooks, book, numbers, progress, rerun, render, bundle,
verify.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import subprocess
import sys
import time
import warnings

from polycstr_lib.reactor.scenarios import SCENARIOS
from polycstr_lib.toolkit.deadline import EXIT_INCOMPLETE, DeadlineReached
from polycstr_lib.toolkit.store import ReportedError

NMPC_HORIZON = 10  # default NMPC horizon of the CLI, equal to NMPCConfig's (checked by a test)
#: Most episodes one evaluation may ask for: 10,000 episodes hold about 1 GB of trajectories.
MAX_EPISODES = 10_000
#: Seeds are drawn in [0, 2**31): torch, NumPy and Dask all take them.
MAX_SEED = 2**31 - 1
#: Set to show the full traceback of an error the command line reports in one line.
DEBUG_ENV = "POLYCSTR_DEBUG"


def _cmd_data(args: argparse.Namespace) -> int:
    from polycstr_lib.reactor.datasets import DatasetConfig, ensure_dataset

    for name in args.scenario or list(SCENARIOS):
        start = time.perf_counter()
        config = DatasetConfig(name, episodes=args.episodes, seed=args.seed)
        path, generated = ensure_dataset(name, regenerate=args.regenerate, config=config)
        verb = "generated" if generated else "valid, kept"
        print(f"[data] {name}: {verb} {path} ({time.perf_counter() - start:.1f} s)")
    return 0


def _train_config(args: argparse.Namespace):
    from polycstr_lib.agents.config import TrainConfig

    return TrainConfig(
        algorithm=args.algorithm, scenario=args.scenario, steps=args.steps, seed=args.seed
    )


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    from polycstr_lib.agents.sweeps import train_many
    from polycstr_lib.reactor.datasets import ensure_dataset

    ensure_dataset(args.scenario)
    base = _train_config(args)
    configs = [dataclasses.replace(base, seed=s) for s in (args.seeds or [args.seed])]
    results = train_many(
        configs,
        processes=args.workers,
        force=args.force,
        scheduler=args.scheduler,
        snapshot_steps=args.snapshot_steps or (),
    )
    for config, (_, log) in zip(configs, results, strict=True):
        state = "loaded from cache" if log.attrs.get("cached") else "trained"
        print(
            f"[train] {config.algorithm} on {config.scenario}, seed {config.seed}: "
            f"{state} -> {log.attrs['run_dir']}"
        )
    return 0


def _cmd_evaluate_nmpc(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from polycstr_lib.analysis.results import summary_table
    from polycstr_lib.reactor.datasets import ensure_dataset, eval_seeds, read_sidecar
    from polycstr_lib.reactor.metrics import (
        add_optimality,
        episode_metrics,
        evaluate_policy,
        optimality_references,
    )
    from polycstr_lib.reactor.nmpc import NMPCConfig, NMPCRun, run_nmpc
    from polycstr_lib.reactor.pi import GainRanges, PIController

    ensure_dataset(args.scenario)
    side = read_sidecar(args.scenario)
    refs = (side["return_min"], side["return_max"])
    run = NMPCRun(args.scenario, args.episodes, nmpc=NMPCConfig(horizon=args.horizon))
    oracle, stats = run_nmpc(run, progress=True, force=args.force)
    references = optimality_references(oracle)
    seeds = eval_seeds(args.episodes)
    pi_metrics = evaluate_policy(
        PIController(GainRanges().nominal()), args.scenario, args.episodes, *refs, progress=True
    )[0]
    metrics = {
        "NMPC (oracle)": add_optimality(episode_metrics(oracle, *refs), seeds, references),
        "PI": add_optimality(pi_metrics, seeds, references),
    }
    with pd.option_context(
        "display.float_format", "{:.2f}".format, "display.width", 120, "display.max_columns", None
    ):
        print(summary_table(metrics))
    seconds = 1e3 * np.asarray(stats["solve_seconds"])
    source = "cached" if stats["cached"] else "solved"
    print(
        f"[nmpc] {source}: horizon {args.horizon}, {len(seconds)} solves, solve time per step "
        f"median {np.median(seconds):.1f} ms, p95 {np.percentile(seconds, 95):.1f} ms, "
        f"{stats['failures']} not converged"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    if args.policy == "nmpc":
        return _cmd_evaluate_nmpc(args)

    from polycstr_lib.agents.runs import train_agent
    from polycstr_lib.analysis.results import summary_table
    from polycstr_lib.correction.cost_models import CostModelConfig, train_cost_model
    from polycstr_lib.correction.safety import CorrectedPolicy
    from polycstr_lib.reactor.datasets import ensure_dataset, load_offline_data, read_sidecar
    from polycstr_lib.reactor.metrics import evaluate_policy
    from polycstr_lib.reactor.pi import GainRanges, PIController

    ensure_dataset(args.scenario)
    side = read_sidecar(args.scenario)
    refs = (side["return_min"], side["return_max"])
    policies = {"PI": PIController(GainRanges().nominal())}
    if args.algorithm != "pi":
        agent, _ = train_agent(_train_config(args), progress=True)
        name = args.algorithm.upper()
        policies[name] = agent.act
        if args.corrected:
            cost_model, _ = train_cost_model(load_offline_data(args.scenario), CostModelConfig())
            policies[name + "+"] = CorrectedPolicy(
                agent, cost_model, steps=args.correction_steps, step_size=args.step_size
            ).act
    metrics = {
        name: evaluate_policy(policy, args.scenario, args.episodes, *refs, progress=True)[0]
        for name, policy in policies.items()
    }
    with pd.option_context("display.float_format", "{:.2f}".format, "display.width", 120):
        print(summary_table(metrics))
    return 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polycstr_lib.book.pipeline import execute_notebooks

    executed = Path(args.executed) if getattr(args, "executed", None) else None
    deadline = args.deadline
    if args.budget_minutes is not None:
        from polycstr_lib.toolkit.deadline import deadline_after

        deadline = deadline_after(args.budget_minutes)
    timings = execute_notebooks(
        args.profile, only=args.only, executed_dir=executed, deadline=deadline
    )
    for page, seconds in timings:
        print(f"[book] {page}: {seconds:.1f} s")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from polycstr_lib.book.plan import build_plan, calibrate, plan_text

    executed = Path(args.executed) if args.executed else None
    rates = calibrate() if args.calibrate else None
    plan = build_plan(
        args.profile, args.workers, rates=rates, executed_dir=executed, only=args.only
    )
    print(json.dumps(plan.to_json(), indent=1, default=str) if args.json else plan_text(plan))
    return 0


def _cmd_bundle_export(args: argparse.Namespace) -> int:
    from polycstr_lib.book.bundle import export_bundle
    from polycstr_lib.book.site import public_repository
    from polycstr_lib.book.summaries import write_bundle_record

    report = export_bundle(args.file, args.executed)
    checksum = write_bundle_record(report, args.record, public_repository())
    skipped = (
        f" ({report.skipped} unfinished, damaged or outdated left out)" if report.skipped else ""
    )
    print(
        f"[bundle] wrote {report.path}: {report.entries} entries{skipped}, "
        f"{report.values} glued values of {report.pages} pages (profile {report.profile}); "
        f"sha256 {report.sha256} (in {checksum})"
    )
    return 0


def _print_import(report) -> None:  # noqa: ANN001 - an ImportReport
    print(
        f"[bundle] imported {len(report.imported)} entries, kept {len(report.present)} "
        f"already in the store, left out {len(report.stale)} stale "
        f"(build: profile {report.profile}, commit {report.commit})"
    )
    for difference in report.code:
        print(f"[bundle] made by other code: {difference}")
    for label in report.differing:
        print(f"[bundle] kept the store's {label}: its files differ from the bundle's")
    for label, reason in report.stale:
        print(f"[bundle] stale, not imported: {label}: {reason}")


def _cmd_bundle_import(args: argparse.Namespace) -> int:
    from polycstr_lib.book.bundle import import_bundle

    _print_import(import_bundle(args.source, args.sha256))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polycstr_lib.book.bundle import VERIFY_DIR, import_bundle, verify_build
    from polycstr_lib.book.glue import build_provenance, glued_numbers
    from polycstr_lib.book.profiles import page_group

    if args.bundle:
        report = import_bundle(args.bundle, args.sha256)
        _print_import(report)
        profile, expected, against = report.profile, report.numbers, f"the bundle {args.bundle}"
    else:  # the store against the book's own build
        expected = glued_numbers()
        profiles = build_provenance()["profile"]
        if len(profiles) != 1:
            raise ValueError(f"book/executed has pages of profiles {sorted(profiles)}")
        profile, against = next(iter(profiles)), "book/executed"
    executed = Path(args.executed) if args.executed else VERIFY_DIR
    only = page_group(args.group) if args.group else args.only
    result = verify_build(expected, profile, executed, only)
    for page, name, want, got in result.differences:
        print(f"{page}\t{name}\t{want!r}\t{got!r}")
    left_out = f", {result.timings} timings not compared" if result.timings else ""
    if result.differences:
        print(
            f"{len(result.differences)} of {result.values} glued values differ from {against}"
            f"{left_out} (expected, then rebuilt without training)",
            file=sys.stderr,
        )
        return 1
    print(f"identical: {result.values} values on {result.pages} pages{left_out}")
    return 0


def _cmd_rerun(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polycstr_lib.book.profiles import EXECUTED_DIR
    from polycstr_lib.book.rerun import rerun_page, rerun_plan

    executed = Path(args.executed) if args.executed else EXECUTED_DIR
    plan = rerun_plan(args.page, args.defaults, Path(args.out), executed)
    how = "its notebook's defaults" if args.defaults else f"the parameters of {executed}"
    print(f"[rerun] {args.page} with {how}; the same as\n  {plan.command()}")
    output = rerun_page(plan)
    print(
        f"[rerun] wrote {output}; see its glued prose with `python -m polycstr_lib render {output}`"
    )
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polycstr_lib.book.rerun import render_page

    print(f"[render] {render_page(Path(args.notebook))}")
    return 0


def _cmd_book(args: argparse.Namespace) -> int:
    from polycstr_lib.book.profiles import REPO_ROOT

    _cmd_notebooks(args)
    # the bundle and its record for the "Verify these numbers" page, as `make html` does
    bundle = REPO_ROOT / "_build" / "bundle" / f"polycstr-{args.profile}.tar"
    record = REPO_ROOT / "book" / "executed" / "bundle.md"
    _cmd_bundle_export(argparse.Namespace(file=bundle, executed=None, record=record))
    from polycstr_lib.book.rerun import JUPYTER_BOOK

    cmd = [
        *JUPYTER_BOOK,
        "build",
        str(REPO_ROOT),
        "--warningiserror",
        "--keep-going",
    ]
    return subprocess.call(cmd)


def _cmd_numbers(args: argparse.Namespace) -> int:
    from pathlib import Path

    from polycstr_lib.book.glue import build_provenance, differing_numbers, glued_numbers

    def read(folder: str | None) -> dict:
        pages = glued_numbers(Path(folder) if folder else None)
        if args.page:
            unknown = sorted(set(args.page) - set(pages))
            if unknown:
                raise SystemExit(f"no executed page {unknown} in {folder or 'book/executed'}")
            pages = {page: pages[page] for page in args.page}
        return {
            page: {
                name: value
                for name, value in values.items()
                if (not args.match or args.match in name)
                and not any(text in name for text in args.skip or ())
            }
            for page, values in pages.items()
        }

    try:
        mine = read(args.executed)
        if args.against is None:
            for page, values in mine.items():
                for name, value in values.items():
                    print(f"{page}\t{name}\t{value!r}")
            return 0
        other = read(args.against)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(str(error)) from None
    builds = {
        label: build_provenance(Path(folder) if folder else None)
        for label, folder in (("this build", args.executed), ("the other", args.against))
    }
    for label, found in builds.items():
        print(
            f"{label}: profile {', '.join(sorted(found['profile'])) or 'unknown'}, "
            f"commit {', '.join(sorted(found['commit'])) or 'unknown'}",
            file=sys.stderr,
        )
    if builds["this build"]["profile"] != builds["the other"]["profile"]:
        print("the two builds are of different profiles: their numbers differ", file=sys.stderr)
    differences = differing_numbers(mine, other)
    for page, name, left, right in differences:
        print(f"{page}\t{name}\t{left!r}\t{right!r}")
    count = sum(len(values) for values in mine.values())
    if differences:
        print(f"{len(differences)} glued values differ", file=sys.stderr)
        return 1
    print(f"identical: {count} glued values on {len(mine)} pages", file=sys.stderr)
    return 0


def _cmd_progress(args: argparse.Namespace) -> int:
    from polycstr_lib.agents.loop import RESUME_EVERY_S, training_in_progress

    table = training_in_progress()
    if table.empty:
        print("no training in progress (no resume states)")
        return 0

    def minutes(seconds: float) -> str:
        return "?" if math.isnan(seconds) else f"{seconds / 60:.0f} min"

    print(f"{'ensemble':<28}{'step':>14}{'steps/s':>9}{'left':>9}  state written")
    for row in table.itertuples():
        name = f"{row.algorithm} {row.scenario} ({row.seeds} seeds)"
        of = f"{row.step:,}/{row.budget:,}" if row.budget else f"{row.step:,}"
        written = f"{row.age_s:.0f} s ago"
        if row.age_s > 3 * RESUME_EVERY_S:
            written += " (stopped: the next run resumes it)"
        print(f"{name:<28}{of:>14}{row.steps_per_s:>9.2f}{minutes(row.eta_s):>9}  {written}")
    return 0


def _scenario(value: str) -> str:
    if value not in SCENARIOS:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {value!r}; choose from {', '.join(SCENARIOS)}"
        )
    return value


def _integer(value: str, low: int, high: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
    if not low <= number <= high:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def _positive(value: str) -> int:
    return _integer(value, 1, sys.maxsize, "a positive integer")


def _episodes(value: str) -> int:
    return _integer(value, 1, MAX_EPISODES, f"a number of episodes from 1 to {MAX_EPISODES:,}")


def _seed(value: str) -> int:
    return _integer(value, 0, MAX_SEED, f"a seed from 0 to {MAX_SEED:,}")


def _step_size(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite step size >= 0, got {value!r}")
    return number


def _deadline(value: str) -> float:
    from polycstr_lib.toolkit.deadline import parse_deadline

    try:
        return parse_deadline(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _minutes(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of minutes, got {value!r}")
    return number


def _scheduler(value: str) -> str:
    """A Dask scheduler address: tcp://host:port (or tls://, ucx://, inproc://)."""
    scheme, _, rest = value.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme not in ("tcp", "tls", "ucx", "inproc") or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(
            f"expected a scheduler address such as tcp://10.0.0.5:8786, got {value!r}"
        )
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with a mistake in one line (the usage is one ``--help`` away)."""

    def error(self, message: str):  # noqa: ANN201 - argparse's signature
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from polycstr_lib.book.profiles import PAGE_GROUPS

    parser = _Parser(prog="python -m polycstr_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="generate the PI datasets (skips valid ones)")
    data.add_argument(
        "--scenario",
        type=_scenario,
        action="append",
        help="scenario (repeatable; default: all three)",
    )
    data.add_argument("--episodes", type=_episodes, default=100, help="episodes per dataset")
    data.add_argument("--seed", type=_seed, default=0, help="generation seed")
    data.add_argument("--regenerate", action="store_true", help="regenerate even if valid")
    data.set_defaults(func=_cmd_data)

    train = sub.add_parser("train", help="train (or load) one agent on a scenario's dataset")
    evaluate = sub.add_parser(
        "evaluate",
        help="evaluate PI and one agent, or the NMPC oracle, on test episodes (table of metrics)",
    )
    for p in (train, evaluate):
        choices = ["bc", "iql", "cql"] + (["pi"] if p is evaluate else [])
        p.add_argument("--algorithm", choices=choices, default="iql", help="agent (default iql)")
        p.add_argument("--scenario", type=_scenario, default="startup", help="scenario")
        p.add_argument("--steps", type=_positive, default=2000, help="gradient steps")
        p.add_argument("--seed", type=_seed, default=0, help="training seed")
    train.add_argument("--force", action="store_true", help="retrain even if cached")
    train.add_argument(
        "--seeds",
        type=_seed,
        nargs="+",
        help="several seeds, trained together as seed ensembles (overrides --seed)",
    )
    train.add_argument(
        "--workers",
        type=_positive,
        help="local Dask worker processes (default: one per CPU core)",
    )
    train.add_argument(
        "--scheduler",
        type=_scheduler,
        help="address of an existing Dask scheduler, e.g. tcp://10.0.0.5:8786",
    )
    train.add_argument(
        "--snapshot-steps",
        type=_positive,
        nargs="+",
        help="also save each seed's state after these many steps (learning curves)",
    )
    train.set_defaults(func=_cmd_train)
    evaluate.add_argument("--episodes", type=_episodes, default=20, help="test episodes")
    evaluate.add_argument(
        "--policy",
        choices=["agent", "nmpc"],
        default="agent",
        help="'agent': PI and --algorithm (default); 'nmpc': PI and the NMPC oracle",
    )
    evaluate.add_argument(
        "--horizon", type=_positive, default=NMPC_HORIZON, help="NMPC horizon (30-min steps)"
    )
    evaluate.add_argument("--force", action="store_true", help="re-solve NMPC even if cached")
    evaluate.add_argument("--corrected", action="store_true", help="also the '+' version")
    evaluate.add_argument("--correction-steps", type=_positive, default=3, help="safety K")
    evaluate.add_argument("--step-size", type=_step_size, default=0.001, help="safety eta")
    evaluate.set_defaults(func=_cmd_evaluate)

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
        limit = p.add_mutually_exclusive_group()
        limit.add_argument(
            "--deadline",
            type=_deadline,
            metavar="TIME",
            help="ISO 8601 time (UTC without an offset) at which training stops, resumable, "
            f"and the build exits {EXIT_INCOMPLETE} (default: $POLYCSTR_DEADLINE, or none)",
        )
        limit.add_argument(
            "--budget-minutes",
            type=_minutes,
            metavar="N",
            help="the same, N minutes after the start",
        )
        if name == "notebooks":
            p.add_argument(
                "--executed",
                metavar="DIR",
                help="folder of the executed pages (default: book/executed)",
            )
        p.set_defaults(func=func)
    plan = sub.add_parser(
        "plan",
        help="what a build will run per page, what is cached, and how long the rest will take",
    )
    plan.add_argument(
        "--profile", default="quick", choices=["quick", "paper"], help="default: quick"
    )
    plan.add_argument(
        "--workers",
        type=_positive,
        default=2,
        help="processes a page's training is spread over (default: 2, the pages' own)",
    )
    plan.add_argument("--only", action="append", help="page stem to plan (repeatable)")
    plan.add_argument(
        "--executed", metavar="DIR", help="folder of the executed pages (default: book/executed)"
    )
    plan.add_argument("--json", action="store_true", help="the plan as JSON")
    plan.add_argument(
        "--calibrate",
        action="store_true",
        help="measure the rates now (about two minutes) instead of the last build's",
    )
    plan.set_defaults(func=_cmd_plan)
    numbers = sub.add_parser(
        "numbers",
        help="print the values glued into the book's prose, or compare two builds' values",
    )
    numbers.add_argument(
        "--executed", help="folder of executed pages (default: book/executed)", metavar="DIR"
    )
    numbers.add_argument(
        "--against",
        metavar="DIR",
        help="a second build's executed pages: print only the values that differ, exit 1 if any",
    )
    numbers.add_argument("--page", action="append", help="page stem (repeatable; default: all)")
    numbers.add_argument("--match", help="only glue names containing this text")
    numbers.add_argument(
        "--skip",
        action="append",
        metavar="TEXT",
        help="leave out glue names containing this text (repeatable), e.g. _ms for timings",
    )
    numbers.set_defaults(func=_cmd_numbers)
    progress = sub.add_parser(
        "progress",
        help="training in progress or interrupted (for a long build, from another terminal)",
    )
    progress.set_defaults(func=_cmd_progress)
    rerun = sub.add_parser(
        "rerun",
        help="rerun one page: with the parameters the book was built with, or the defaults",
    )
    rerun.add_argument("page", help="page stem, e.g. 05_results_startup")
    rerun.add_argument(
        "--defaults",
        action="store_true",
        help="run the notebook's own parameters cell instead of the build's parameters",
    )
    rerun.add_argument("--out", default="rerun", metavar="DIR", help="output folder (rerun/)")
    rerun.add_argument(
        "--executed", metavar="DIR", help="the build to copy (default: book/executed)"
    )
    rerun.set_defaults(func=_cmd_rerun)
    render = sub.add_parser(
        "render", help="render one executed notebook to HTML with its glued prose"
    )
    render.add_argument("notebook", help="an executed notebook, e.g. rerun/02_dataset.ipynb")
    render.set_defaults(func=_cmd_render)
    bundle = sub.add_parser(
        "bundle", help="export the artifact store and the glued numbers, or import a bundle"
    )
    actions = bundle.add_subparsers(dest="action", required=True)
    export = actions.add_parser(
        "export", help="write the store's entries and book/executed's numbers to FILE"
    )
    export.add_argument("file", metavar="FILE", help="the archive: .tar, .tar.gz, .tgz or .zip")
    export.add_argument(
        "--executed", metavar="DIR", help="the build's executed pages (default: book/executed)"
    )
    export.add_argument(
        "--record",
        metavar="MD",
        help="also describe the bundle (name, size, sha256) in this Markdown file, which the "
        "'Verify these numbers' page includes (make html: book/executed/bundle.md)",
    )
    export.set_defaults(func=_cmd_bundle_export)
    imp = actions.add_parser(
        "import", help="verify a bundle, then add its entries to the store (none overwritten)"
    )
    imp.add_argument("source", metavar="FILE_OR_URL", help="the archive, or its URL")
    imp.set_defaults(func=_cmd_bundle_import)
    verify = sub.add_parser(
        "verify",
        help="execute the pages without training and compare their numbers with a bundle's",
    )
    verify.add_argument(
        "--bundle",
        metavar="FILE_OR_URL",
        help="import this bundle and compare with its numbers (default: with book/executed)",
    )
    verify.add_argument(
        "--executed", metavar="DIR", help="where the pages are executed (default: _build/verify)"
    )
    pages = verify.add_mutually_exclusive_group()
    pages.add_argument("--only", action="append", help="page stem (repeatable; default: all)")
    pages.add_argument(
        "--group",
        choices=PAGE_GROUPS,
        help="'chained': only the pages that read other executed pages, with the pages they "
        "read; 'independent': only the others. Two verifications that can run at once, each "
        "with its own store and folder",
    )
    verify.set_defaults(func=_cmd_verify)
    for p in (imp, verify):
        p.add_argument("--sha256", metavar="HEX", help="the archive's SHA-256 (needed for a URL)")
    return parser


def _interrupted_message() -> str:
    """What a Ctrl-C leaves behind: the training states the same command resumes from."""
    try:
        from polycstr_lib.agents.loop import RESUME_EVERY_S, training_in_progress

        table, every = training_in_progress(), f"{RESUME_EVERY_S:.0f} s"
    except Exception:  # the message must not fail: it is printed while stopping
        table, every = None, "few minutes"
    if table is None or table.empty:
        return (
            f"interrupted before a training state was written (one is written every {every}); "
            "finished results are kept and the same command reuses them"
        )
    where = ", ".join(
        f"{row.algorithm} {row.scenario} at step {row.step:,}"
        + (f" of {row.budget:,}" if row.budget else "")
        for row in table.itertuples()
    )
    return f"interrupted ({where}); the same command resumes from there"


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """A warning as the command line prints it: one line, no source excerpt."""
    return f"polycstr_lib: {category.__name__}: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Runs one command; a user or environment mistake is one line on stderr, not a traceback.

    Exit status: the command's, 2 for a mistake it reports, 75 when the build's deadline
    stopped it (its progress saved: the same command resumes), 130 after Ctrl-C, 141 when the
    reader of its output closed the pipe.
    """
    args = build_parser().parse_args(argv)
    warnings.formatwarning = _one_line_warning
    try:
        return args.func(args)
    except DeadlineReached as error:
        print(f"polycstr_lib: incomplete: {error}; rerun to resume", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print(f"polycstr_lib: {_interrupted_message()}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped early (`numbers | head`): no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a process killed by SIGPIPE
    except (ReportedError, ValueError, OSError, TimeoutError) as error:
        if os.environ.get(DEBUG_ENV):
            raise
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            message = (
                f"the disk is full ({error.filename or 'no file named'}); free space and rerun"
            )
        else:
            message = str(error) or type(error).__name__
        print(f"polycstr_lib: {message} (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
