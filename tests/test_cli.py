"""The command line: help, bad arguments, and a tiny train/evaluate round trip."""

import subprocess
import sys

import pytest

from polycstr_lib.__main__ import build_parser, main


@pytest.mark.parametrize(
    "command",
    [
        "data",
        "train",
        "evaluate",
        "notebooks",
        "book",
        "numbers",
        "progress",
        "rerun",
        "render",
        "plan",
    ],
)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--scenario", "shutdown"], "unknown scenario 'shutdown'"),
        (["train", "--steps", "0"], "positive integer"),
        (["evaluate", "--algorithm", "ppo"], "invalid choice"),
        (["data", "--episodes", "x"], "number of episodes"),
        (["book", "--profile", "huge"], "invalid choice"),
        (["train", "--workers", "0"], "positive integer"),
        (["train", "--snapshot-steps", "-5"], "positive integer"),
        (["evaluate", "--episodes", "1000000000"], "from 1 to 10,000"),
        (["train", "--seed", "99999999999"], "a seed from 0"),
        (["train", "--seed", "-1"], "a seed from 0"),
        (["train", "--seeds", "0", "x"], "a seed from 0"),
        (["evaluate", "--step-size", "nan"], "finite step size >= 0"),
        (["evaluate", "--step-size", "-0.1"], "finite step size >= 0"),
        (["evaluate", "--step-size", "inf"], "finite step size >= 0"),
        (["train", "--scheduler", "localhost"], "tcp://10.0.0.5:8786"),
        (["train", "--scheduler", "tcp://host:port"], "tcp://10.0.0.5:8786"),
        (["notebooks", "--deadline", "soon"], "is not an ISO 8601 time such as"),
        (["book", "--budget-minutes", "0"], "positive number of minutes"),
        (["notebooks", "--budget-minutes", "nan"], "positive number of minutes"),
        (["book", "--deadline", "2030-01-01", "--budget-minutes", "5"], "not allowed with"),
    ],
)
def test_bad_arguments_are_clear_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_module_entry_point_runs():
    out = subprocess.run(
        [sys.executable, "-m", "polycstr_lib", "--help"], capture_output=True, text=True, check=True
    )
    assert "evaluate" in out.stdout


def test_train_then_evaluate(minari_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    assert main(["train", "--algorithm", "bc", "--scenario", "grade_up", "--steps", "5"]) == 0
    assert "trained" in capsys.readouterr().out
    assert main(["train", "--algorithm", "bc", "--scenario", "grade_up", "--steps", "5"]) == 0
    assert "loaded from cache" in capsys.readouterr().out
    assert (
        main(
            [
                "evaluate",
                "--algorithm",
                "bc",
                "--scenario",
                "grade_up",
                "--steps",
                "5",
                "--episodes",
                "2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "PI" in out and "BC" in out and "mean" in out


def test_train_several_seeds_with_snapshots(minari_store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    argv = ["train", "--algorithm", "bc", "--scenario", "grade_up", "--steps", "4"]
    assert main([*argv, "--seeds", "1", "2", "--workers", "1", "--snapshot-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "seed 1: trained" in out and "seed 2: trained" in out
    # The 2-step snapshots are cached runs of their own.
    assert (
        main(
            ["train", "--algorithm", "bc", "--scenario", "grade_up", "--steps", "2", "--seed", "2"]
        )
        == 0
    )
    assert "seed 2: loaded from cache" in capsys.readouterr().out


def _executed_page(folder, page: str, values: dict, profile: str | None = None) -> None:
    """An executed page with ``values`` glued as myst-nb does, after a provenance banner of
    ``profile`` when one is given."""
    import json

    outputs = []
    if profile is not None:
        banner = f"Run provenance: profile {profile}, commit abc1234, executed"
        outputs.append(
            {"output_type": "display_data", "metadata": {}, "data": {"text/plain": banner}}
        )
    outputs += [
        {
            "output_type": "display_data",
            "metadata": {
                "scrapbook": {"name": name, "mime_prefix": "application/papermill.record/"}
            },
            "data": {"application/papermill.record/text/plain": repr(value)},
        }
        for name, value in values.items()
    ]
    folder.mkdir(parents=True, exist_ok=True)
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": outputs}]}
    (folder / f"{page}.ipynb").write_text(json.dumps(nb))


def test_numbers_prints_every_glued_value_in_book_order(tmp_path, capsys):
    _executed_page(tmp_path, "07_claims", {"count_holds": 3})
    _executed_page(tmp_path, "02_dataset", {"episodes": 100, "load_seconds": 1.5})
    assert main(["numbers", "--executed", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "02_dataset\tepisodes\t100",
        "02_dataset\tload_seconds\t1.5",
        "07_claims\tcount_holds\t3",
    ]
    assert main(["numbers", "--executed", str(tmp_path), "--skip", "_seconds"]) == 0
    assert "load_seconds" not in capsys.readouterr().out


def test_numbers_against_another_build_lists_exactly_the_differences(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    same = {"iqm": 97.25, "nan": float("nan"), "seeds": [1.0, 2.0], "verdict": "holds"}
    _executed_page(first, "05_results_startup", {**same, "worst": -3.5, "only_first": 1})
    _executed_page(second, "05_results_startup", {**same, "worst": -3.5000000000000004})
    _executed_page(second, "07_claims", {"count_holds": 3})
    assert main(["numbers", "--executed", str(first), "--against", str(first)]) == 0
    assert "identical: 6 glued values on 1 pages" in capsys.readouterr().err
    assert main(["numbers", "--executed", str(first), "--against", str(second)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "05_results_startup\tworst\t-3.5\t-3.5000000000000004",
        "05_results_startup\tonly_first\t1\t'(missing)'",
        "07_claims\tcount_holds\t'(missing)'\t3",
    ]
    assert "3 glued values differ" in out.err


def test_numbers_rejects_a_missing_folder_or_page(tmp_path):
    with pytest.raises(SystemExit, match="run `make book` first"):
        main(["numbers", "--executed", str(tmp_path / "nowhere")])
    _executed_page(tmp_path, "02_dataset", {"episodes": 100})
    with pytest.raises(SystemExit, match="no executed page"):
        main(["numbers", "--executed", str(tmp_path), "--page", "99_missing"])


def test_numbers_treats_an_int_and_an_equal_float_as_different():
    from polycstr_lib.book.glue import differing_numbers

    assert differing_numbers({"p": {"x": 1}}, {"p": {"x": 1.0}}) == [("p", "x", 1, 1.0)]
    assert differing_numbers({"p": {"x": {"a": [0.1]}}}, {"p": {"x": {"a": [0.1]}}}) == []


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("variable", ["POLYCSTR_ARTIFACTS", "MINARI_DATASETS_PATH"])
def test_a_store_path_that_is_a_file_is_one_line(variable, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    path = tmp_path / "a-file"
    path.write_text("")
    monkeypatch.setenv(variable, str(path))
    argv = ["train", "--steps", "1"] if variable == "POLYCSTR_ARTIFACTS" else ["data"]
    assert main(argv) == 2
    assert f"{variable}={path} is a file, not a folder" in _one_line(capsys)


def test_a_data_seed_that_reaches_the_evaluation_seeds_is_refused(monkeypatch, capsys):
    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    assert main(["data", "--scenario", "startup", "--seed", "1499"]) == 2
    assert "would reuse validation or test episodes" in _one_line(capsys)


def test_an_unknown_page_is_an_error(monkeypatch, capsys):
    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    assert main(["notebooks", "--only", "nosuchpage"]) == 2
    assert "no page nosuchpage in the book" in _one_line(capsys)


def test_ctrl_c_says_what_resumes_and_exits_130(monkeypatch, capsys, tmp_path):
    import polycstr_lib.__main__ as cli

    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_progress", interrupted)
    assert main(["progress"]) == 130
    assert "interrupted" in _one_line(capsys)


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    path = tmp_path / "a-file"
    path.write_text("")
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(path))
    monkeypatch.setenv("POLYCSTR_DEBUG", "1")
    with pytest.raises(NotADirectoryError):
        main(["train", "--steps", "1"])


def test_numbers_into_a_closed_pipe_is_quiet(tmp_path) -> None:
    """`numbers | head -1`: no BrokenPipeError traceback, the status of a SIGPIPE."""
    _executed_page(tmp_path, "02_dataset", {f"value_{i}": i for i in range(20_000)})
    command = (
        f"{sys.executable} -m polycstr_lib numbers --executed {tmp_path} | head -1; "
        "echo status ${PIPESTATUS[0]}"
    )
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["02_dataset\tvalue_0\t0", "status 141"]
    assert "Traceback" not in out.stderr


def test_numbers_against_names_both_builds_profiles_and_commits(tmp_path, capsys) -> None:
    import json

    for folder, profile, commit in (("a", "quick", "abc1234"), ("b", "paper", "def5678")):
        _executed_page(tmp_path / folder, "02_dataset", {"episodes": 100})
        path = tmp_path / folder / "02_dataset.ipynb"
        nb = json.loads(path.read_text())
        banner = f"Run provenance: profile {profile}, commit {commit}, executed 2026-12-03"
        nb["cells"].append(
            {
                "cell_type": "code",
                "source": "",
                "outputs": [{"output_type": "display_data", "data": {"text/plain": banner}}],
            }
        )
        path.write_text(json.dumps(nb))
    argv = ["numbers", "--executed", str(tmp_path / "a"), "--against", str(tmp_path / "b")]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "this build: profile quick, commit abc1234" in err
    assert "the other: profile paper, commit def5678" in err
    assert "different profiles" in err


def test_a_full_disk_is_one_line(monkeypatch, capsys) -> None:
    import errno

    import polycstr_lib.__main__ as cli

    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)

    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "/store/agents/x/agent.pt")

    monkeypatch.setattr(cli, "_cmd_progress", full)
    assert main(["progress"]) == 2
    assert "the disk is full (/store/agents/x/agent.pt); free space and rerun" in _one_line(capsys)


def test_a_warning_is_one_line_on_the_command_line() -> None:
    script = (
        "import sys, warnings; import polycstr_lib.__main__ as cli\n"
        "def warns(args):\n"
        "    warnings.warn('agent.pt: sha256 mismatch', UserWarning, stacklevel=1)\n"
        "    return 0\n"
        "cli._cmd_progress = warns\n"
        "sys.exit(cli.main(['progress']))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stderr == "polycstr_lib: UserWarning: agent.pt: sha256 mismatch\n"


def test_an_unreachable_scheduler_is_one_line_within_seconds(tmp_path, monkeypatch, capsys):
    import time

    from test_agents import make_tiny_data

    import polycstr_lib.agents.sweeps as sweeps

    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path))
    monkeypatch.setattr(sweeps, "SCHEDULER_TIMEOUT_S", 2)
    monkeypatch.setattr(sweeps, "load_training_data", lambda scenario: make_tiny_data())
    start = time.perf_counter()
    argv = ["train", "--steps", "3", "--scheduler", "tcp://127.0.0.1:9"]
    monkeypatch.setattr("polycstr_lib.reactor.datasets.ensure_dataset", lambda *a, **k: None)
    assert main(argv) == 2
    assert time.perf_counter() - start < 30
    assert "tcp://127.0.0.1:9" in _one_line(capsys)


def test_a_dataset_made_with_other_settings_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """A RuntimeError subclass reported to the user (DatasetError) is one line, exit 2."""
    from polycstr_lib.reactor.datasets import DatasetConfig, generate_dataset

    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    monkeypatch.setenv("POLYCSTR_ARTIFACTS", str(tmp_path / "store"))
    generate_dataset(DatasetConfig("grade_up", episodes=3, seed=4))
    assert main(["train", "--scenario", "grade_up", "--steps", "3"]) == 2
    assert "was made with seed 4 and 3 episodes" in _one_line(capsys)


def test_a_build_stopped_by_its_deadline_exits_75_saying_where(tmp_path, monkeypatch, capsys):
    """The pipeline's DeadlineReached is one line on stderr and exit status 75; nothing was
    executed after the deadline."""
    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    executed = tmp_path / "executed"
    argv = ["notebooks", "--deadline", "2000-01-01T00:00Z", "--executed", str(executed)]
    assert main(argv) == 75
    line = _one_line(capsys)
    assert line.startswith("polycstr_lib: incomplete: deadline 2000-01-01T00:00:00Z reached")
    assert line.endswith("; rerun to resume")
    assert not list(executed.glob("*.ipynb"))
    assert (executed / "incomplete.txt").is_file()


def test_a_time_budget_is_a_deadline_that_many_minutes_ahead(monkeypatch):
    import time

    import polycstr_lib.book.pipeline as pipeline

    seen = {}

    def execute(profile, only=None, executed_dir=None, deadline=None):
        seen["deadline"] = deadline
        return []

    monkeypatch.setattr(pipeline, "execute_notebooks", execute)
    before = time.time()
    assert main(["notebooks", "--budget-minutes", "90"]) == 0
    assert before + 90 * 60 <= seen["deadline"] <= time.time() + 90 * 60
    assert main(["notebooks", "--deadline", "2030-01-01T01:00+01:00"]) == 0
    assert seen["deadline"] == 1893456000.0  # 2030-01-01T00:00Z
    assert main(["notebooks"]) == 0
    assert seen["deadline"] is None  # the pipeline reads POLYCSTR_DEADLINE


def test_a_bad_deadline_in_the_environment_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("POLYCSTR_DEBUG", raising=False)
    monkeypatch.setenv("POLYCSTR_DEADLINE", "in an hour")
    assert main(["notebooks", "--executed", str(tmp_path)]) == 2
    assert "deadline 'in an hour' is not an ISO 8601 time" in _one_line(capsys)
