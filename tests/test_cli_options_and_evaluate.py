"""Issue 13: the same option name means the same thing in every command (old spellings still work
for one release, with a deprecation warning), and `voxsurv evaluate` warns about leakage and about
test sets too small for a C-index CI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from voxsurv.cli import build_parser, main


def _options():
    """option string -> {command: action} over every sub-command (deprecated aliases left out)."""
    found: dict[str, dict] = {}

    def walk(parser, name):
        for action in parser._actions:  # noqa: SLF001
            if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}".strip())
                continue
            if getattr(action, "deprecated_alias", False):
                continue
            for opt in action.option_strings:
                found.setdefault(opt, {})[name] = action

    walk(build_parser(), "")
    return found


def test_an_option_means_the_same_in_every_command():
    shape = {opt: {cmd: (a.nargs, a.metavar if isinstance(a.metavar, tuple) else None, getattr(a.type, "__name__", None),
                         type(a).__name__) for cmd, a in by_cmd.items()} for opt, by_cmd in _options().items()}
    # maps --png keeps an optional FILE for one release (the old `--png montage.png`); given alone it is the
    # same flag as preprocess --png: a montage in --out
    shape["--png"].pop("maps")
    for opt, per_cmd in shape.items():
        assert len(set(per_cmd.values())) == 1, (opt, per_cmd)
    opts = _options()
    assert {c for c in opts["--out"]} >= {"predict", "convert", "preprocess", "maps", "evaluate", "table1", "cv",
                                          "demo-data"}
    assert "--out-dir" not in opts and "--pixdim" not in opts and "--window" not in opts  # only as deprecated
    assert opts["--hu-window"]["maps"].metavar == opts["--hu-window"]["preprocess"].metavar == ("WIDTH", "LEVEL")
    assert opts["--spacing"]["maps"].metavar == opts["--spacing"]["preprocess"].metavar == ("X", "Y", "Z")


def test_old_spellings_map_to_the_new_meaning_with_a_warning(capsys):
    from voxsurv.core import console

    console.configure()  # what main() does before parsing the sub-command's options
    parser = build_parser()
    args = parser.parse_args(["preprocess", "--image", "a", "--mask", "b", "--out-dir", "o", "--pixdim", "1", "1", "2",
                              "--window", "400", "40"])
    assert args.out == "o" and args.spacing == [1.0, 1.0, 2.0] and args.hu_window == [400.0, 40.0]
    args = parser.parse_args(["maps", "--image", "a", "--mask", "b", "--out", "o", "--window", "-95", "155"])
    assert tuple(args.hu_window) == (250.0, 30.0)  # LOW HIGH -> WIDTH LEVEL
    args = parser.parse_args(["convert", "--ct-dir", "c", "--rtstruct", "r", "--roi", "GTV", "--out-dir", "o"])
    assert args.out == "o"
    err = capsys.readouterr().err
    assert err.count("is deprecated and will be removed in the next release") == 5
    assert "--hu-window WIDTH LEVEL" in err and "use --out" in err and "use --spacing" in err


def test_cv_bundle_takes_a_folder_and_the_old_bare_name_still_works(capsys):
    from voxsurv.core import console
    from voxsurv.commands.cv import _bundle

    console.configure()
    assert _bundle("bundles/pretrain").name == "pretrain"
    assert _bundle("pretrain").name == "pretrain"
    assert "--bundle pretrain is deprecated" in capsys.readouterr().err


# ---- evaluate ------------------------------------------------------------------------------
def _predictions(path, ids, seed=0, events=None):
    rng = np.random.default_rng(seed)
    n = len(ids)
    event = np.array(events if events is not None else (rng.random(n) < 0.6).astype(int))
    pd.DataFrame({"patient_id": ids, "risk": rng.normal(size=n), "time_days": rng.integers(50, 2000, n),
                  "event": event}).to_csv(path, index=False)
    return path


def test_evaluate_warns_when_test_and_reference_share_patients_and_strict_refuses(tmp_path, capsys):
    ref = _predictions(tmp_path / "ref.csv", [f"p{i}" for i in range(60)], seed=1)
    test = _predictions(tmp_path / "test.csv", [f"p{i}" for i in range(50, 90)], seed=2)  # p50..p59 shared
    rc = main(["evaluate", "--predictions", str(test), "--reference", str(ref), "--out", str(tmp_path / "ev"),
               "--bootstrap", "20"])
    err = capsys.readouterr().err
    assert rc == 0
    assert "warning: 10 of 40 test patients are also in the reference (training) file (p50, p51" in err
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert any("leakage" in w for w in metrics["warnings"])
    assert "leakage" in (tmp_path / "ev" / "report.html").read_text()
    rc = main(["evaluate", "--predictions", str(test), "--reference", str(ref), "--out", str(tmp_path / "ev2"),
               "--strict"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: ") and "10 of 40 test patients" in err
    assert not (tmp_path / "ev2").exists()


def test_evaluate_warns_when_the_test_set_is_too_small_for_a_c_index_ci(tmp_path, capsys):
    """The issue's case: 5 patients gave C 0.667 (0.000-1.000) without a word."""
    ref = _predictions(tmp_path / "ref.csv", [f"r{i}" for i in range(60)], seed=3)
    small = _predictions(tmp_path / "small.csv", [f"t{i}" for i in range(5)], seed=4, events=[1, 0, 1, 1, 0])
    rc = main(["evaluate", "--predictions", str(small), "--reference", str(ref), "--out", str(tmp_path / "ev"),
               "--bootstrap", "50", "--times", "365"])
    err = capsys.readouterr().err
    assert rc == 0
    assert ("too small to estimate a C-index confidence interval: 5 patients, 3 deaths (rule: at least 10 deaths "
            "and 20 patients") in err
    big = _predictions(tmp_path / "big.csv", [f"b{i}" for i in range(40)], seed=5, events=[1, 0] * 20)
    rc = main(["evaluate", "--predictions", str(big), "--reference", str(ref), "--out", str(tmp_path / "ev_big"),
               "--bootstrap", "50", "--times", "365"])
    assert rc == 0 and "too small" not in capsys.readouterr().err


@pytest.mark.parametrize("n, events, warned", [(19, 12, True), (20, 10, False), (30, 9, True), (100, 60, False)])
def test_the_small_sample_rule(n, events, warned):
    from voxsurv.stats.sample_checks import c_index_ci_warning

    assert (c_index_ci_warning(n, events) is not None) is warned
