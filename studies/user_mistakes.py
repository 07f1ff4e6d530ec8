"""Every user mistake of issue 29, made on purpose, with the line the project now prints.

Each row runs the real command (``python -m polycstr_lib ...`` or ``papermill``) in a
private artifact store and a private copy of the ``grade_up`` dataset, after damaging what
the row says, and records the exit status, the line the project printed, whether a
traceback reached the terminal, whether a planted payload ran, and the seconds it took.
Prints a Markdown table (and writes it with ``--markdown FILE``).

Run (about 4 minutes on one core; ``--only`` picks rows by number):

    python studies/user_mistakes.py [--markdown mistakes.md] [--only 3 7]
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "polycstr_lib"]
TRAIN_BC = ["train", "--algorithm", "bc", "--scenario", "grade_up", "--steps", "300"]
EVALUATE_BC = ["evaluate", "--algorithm", "bc", "--scenario", "grade_up", "--steps", "300"]


class Payload:
    """A pickle that creates ``marker`` when it is unpickled (what an attacker would plant)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass(frozen=True)
class Mistake:
    """One row: what the user did wrong, the command, and the damage done before it."""

    what: str
    argv: list[str]
    damage: Callable[[Path], None] = lambda root: None
    env: Callable[[Path], dict[str, str]] = lambda root: {}
    interrupt_after_s: float | None = None
    papermill: bool = False
    extra: list[str] = field(default_factory=list)


def store(root: Path) -> Path:
    return root / "store"


def bc_run(root: Path) -> Path:
    (run,) = (store(root) / "agents").glob("bc-grade_up-*")
    return run


def overwrite_agent(root: Path) -> None:
    path = bc_run(root) / "agent.pt"
    data = bytearray(path.read_bytes())
    data[1000:1256] = os.urandom(256)
    path.write_bytes(bytes(data))


def truncate_agent(root: Path) -> None:
    path = bc_run(root) / "agent.pt"
    path.write_bytes(path.read_bytes()[:4096])


def empty_log(root: Path) -> None:
    (bc_run(root) / "log.csv").write_bytes(b"")


def plant_resume_pickle(root: Path) -> None:
    folder = store(root) / "resume" / "iql-grade_up-planted"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.pt").write_bytes(pickle.dumps(Payload(root / "payload-ran")))
    (folder / "manifest.json").write_text('{"format": 1, "files": {}}')


def plant_stale_tmp(root: Path) -> None:
    folder = store(root) / "agents"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host = __import__("socket").gethostname()
    (folder / f".agent.pt.{dead}@{host}.abcd1234.tmp").write_bytes(b"partial")


def break_metadata(root: Path) -> None:
    path = root / "datasets" / "polycstr" / "grade_up" / "pi-v0" / "data" / "metadata.json"
    path.write_text(path.read_text()[:40])


def make_custom_dataset(root: Path) -> None:
    run(
        [*CLI, "data", "--scenario", "grade_up", "--seed", "4", "--episodes", "3", "--regenerate"],
        environment(root),
    )


def a_file(root: Path) -> Path:
    path = root / "a-file"
    path.write_text("")
    return path


MISTAKES = [
    Mistake(
        "256 bytes overwritten in a cached agent",
        EVALUATE_BC + ["--episodes", "2"],
        overwrite_agent,
    ),
    Mistake("a cached agent truncated", EVALUATE_BC + ["--episodes", "2"], truncate_agent),
    Mistake("a cached run's log.csv emptied", EVALUATE_BC + ["--episodes", "2"], empty_log),
    Mistake(
        "a pickle planted in the resume store, then `progress`", ["progress"], plant_resume_pickle
    ),
    Mistake("a write killed mid-way left a .tmp file", TRAIN_BC, plant_stale_tmp),
    Mistake(
        "the dataset's metadata.json broken", ["data", "--scenario", "grade_up"], break_metadata
    ),
    Mistake(
        "a data seed whose episodes are the test episodes",
        ["data", "--scenario", "startup", "--seed", "1999"],
    ),
    Mistake(
        "a data seed whose episodes are the validation episodes",
        ["data", "--scenario", "startup", "--seed", "1499"],
    ),
    Mistake("a NaN step size", EVALUATE_BC + ["--corrected", "--step-size", "nan"]),
    Mistake(
        "a negative step size (gradient ascent)",
        EVALUATE_BC + ["--corrected", "--step-size", "-0.1"],
    ),
    Mistake(
        "an unreachable Dask scheduler",
        [*TRAIN_BC[:-1], "200", "--scheduler", "tcp://127.0.0.1:9"],  # 200 steps: not cached
    ),
    Mistake("a malformed Dask scheduler address", TRAIN_BC + ["--scheduler", "localhost"]),
    Mistake("a seed too large for the generators", TRAIN_BC + ["--seed", "99999999999"]),
    Mistake(
        "POLYCSTR_ARTIFACTS names a file",
        TRAIN_BC,
        env=lambda root: {"POLYCSTR_ARTIFACTS": str(a_file(root))},
    ),
    Mistake(
        "MINARI_DATASETS_PATH names a file",
        ["data", "--scenario", "grade_up"],
        env=lambda root: {"MINARI_DATASETS_PATH": str(a_file(root))},
    ),
    Mistake("a million evaluation episodes", EVALUATE_BC + ["--episodes", "1000000"]),
    Mistake("an unknown page", ["notebooks", "--only", "nosuchpage"]),
    Mistake("a snapshot beyond the budget", TRAIN_BC + ["--snapshot-steps", "500"]),
    Mistake(
        "Ctrl-C while training",
        ["train", "--algorithm", "iql", "--scenario", "grade_up", "--steps", "50000"],
        interrupt_after_s=25.0,
    ),
    Mistake(
        "notebook parameter of the wrong type (-p episodes_shown abc)",
        ["-p", "episodes_shown", "abc"],
        papermill=True,
    ),
    Mistake(
        "a float where a count is expected (-p episodes_shown 2.5)",
        ["-p", "episodes_shown", "2.5"],
        papermill=True,
    ),
    Mistake("an empty scenario list (-y 'scenarios: []')", ["-y", "scenarios: []"], papermill=True),
    Mistake(
        "a boolean as papermill text (-p regenerate maybe)",
        ["-p", "regenerate", "maybe"],
        papermill=True,
    ),
    Mistake("a dataset made with other settings, then `train`", TRAIN_BC, make_custom_dataset),
]


def environment(root: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("POLYCSTR_DEBUG", None)
    env.update(
        POLYCSTR_ARTIFACTS=str(store(root)),
        MINARI_DATASETS_PATH=str(root / "datasets"),
        PYTHONPATH=str(REPO),
    )
    return env


def run(
    argv: list[str], env: dict[str, str], interrupt_after_s: float | None = None
) -> tuple[int, str, float]:
    start = time.perf_counter()
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as typed in a terminal: a shell running this script in the background ignores
        # SIGINT, and the child would inherit that (Python then installs no Ctrl-C handler)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    if interrupt_after_s is not None:
        time.sleep(interrupt_after_s)
        process.send_signal(signal.SIGINT)
    try:
        output, _ = process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        output += "\n(killed after 600 s)"
    return process.returncode, output, time.perf_counter() - start


def the_line(output: str, papermill: bool) -> str:
    """What the project said: its own lines (prefixed ``polycstr_lib:``), a ParameterError's
    message from a notebook, or the last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    if papermill:
        errors = [line for line in lines if line.startswith("ParameterError")]
        return errors[-1] if errors else (lines[-1] if lines else "")
    ours = [
        line for line in lines if line.startswith(("polycstr_lib:", "[", "python -m polycstr_lib"))
    ]
    return " / ".join(ours[-2:]) if ours else (lines[-1] if lines else "")


def prepare(root: Path) -> None:
    source = Path(os.environ.get("MINARI_DATASETS_PATH", Path.home() / ".minari" / "datasets"))
    target = root / "datasets" / "polycstr"
    target.mkdir(parents=True)
    shutil.copy2(source / "polycstr" / "namespace_metadata.json", target)
    shutil.copytree(source / "polycstr" / "grade_up", target / "grade_up")
    code, output, _ = run([*CLI, *TRAIN_BC], environment(root))
    if code != 0:
        raise SystemExit(f"could not train the BC run the rows damage:\n{output}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--only", type=int, nargs="+", help="row numbers (1-based)")
    args = parser.parse_args()
    rows = [
        "| # | mistake | command | exit | what it prints | traceback | payload ran | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="polycstr-mistakes-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        prepare(template)  # one dataset copy and one trained BC run, copied for every row
        for number, mistake in enumerate(MISTAKES, start=1):
            if args.only and number not in args.only:
                continue
            root = Path(tmp) / f"row{number}"
            shutil.copytree(template, root)
            env = environment(root)
            mistake.damage(root)
            env.update(mistake.env(root))
            if mistake.papermill:
                out = root / "out.ipynb"
                argv = [
                    sys.executable,
                    "-m",
                    "papermill",
                    "notebooks/02_dataset.ipynb",
                    str(out),
                    *mistake.argv,
                ]
                shown = "papermill notebooks/02_dataset.ipynb out.ipynb " + " ".join(
                    f"'{a}'" if " " in a else a for a in mistake.argv
                )
            else:
                argv = [*CLI, *mistake.argv]
                shown = "python -m polycstr_lib " + " ".join(mistake.argv)
                overrides = {k: "FILE" for k in mistake.env(root)}
                if overrides:
                    shown = " ".join(f"{k}={v}" for k, v in overrides.items()) + " " + shown
            code, output, seconds = run(argv, env, mistake.interrupt_after_s)
            line = re.sub(re.escape(tmp) + r"/row\d+", "$TMP", the_line(output, mistake.papermill))
            traceback = "yes" if "Traceback" in output and not mistake.papermill else "no"
            ran = "yes" if (root / "payload-ran").exists() else "no"
            rows.append(
                f"| {number} | {mistake.what} | `{shown}` | {code} | {line.replace('|', '/')} "
                f"| {traceback} | {ran} | {seconds:.0f} |"
            )
            print(rows[-1], flush=True)
    table = "\n".join(rows)
    print("\n" + table)
    if args.markdown:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
