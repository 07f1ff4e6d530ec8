"""The command line: help, bad arguments, and a tiny train/evaluate round trip."""

import subprocess
import sys

import pytest

from polycstr_lib.__main__ import build_parser, main


@pytest.mark.parametrize("command", ["data", "train", "evaluate", "notebooks", "book"])
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
        (["data", "--episodes", "x"], "positive integer"),
        (["book", "--profile", "huge"], "invalid choice"),
        (["train", "--workers", "0"], "positive integer"),
        (["train", "--snapshot-steps", "-5"], "positive integer"),
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
