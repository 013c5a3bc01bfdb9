"""Issue 13, one error contract for every sub-command: bad input -> exit 1 and ONE line
`error: <patient/file>: <problem>. Fix: <what to do>` without a traceback and without partial
output; a command line that cannot work -> exit 2 (argparse); a bug -> traceback, a line asking to
report it, exit 3. Also the bad inputs the issue lists: checkpoints that are empty, truncated,
text, pickled objects or of another architecture; table1 on a non-UTF-8 manifest; cv --folds 1;
maps' exit code and prefix."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from inference_helpers import make_training_output, shared_tiny_bundle, write_synthetic_patient
from voxsurv.cli import main


def _run(argv, capsys):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and ". Fix: " in lines[0], lines[0]
    assert "Traceback" not in err and "weights_only" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small bad and good inputs shared by the table below."""
    d = tmp_path_factory.mktemp("bad_inputs")
    latin1 = d / "latin1.csv"
    latin1.write_bytes("patient_id,cohort,image,mask,time_days,event,ct_dir,rtstruct,roi,risk\n"
                       "Pé,a,x,y,1,0,c,r,GTV,0.1\n".encode("latin-1"))
    a_file = d / "a_file.txt"
    a_file.write_text("not a folder")
    image, mask = write_synthetic_patient(d, "ok", seed=0)
    good_pred = d / "pred.csv"
    pd.DataFrame({"patient_id": [f"p{i}" for i in range(12)], "risk": range(12), "time_days": range(100, 112),
                  "event": [1, 0] * 6}).to_csv(good_pred, index=False)
    return {"latin1": latin1, "file": a_file, "missing": d / "missing.csv", "image": image, "mask": mask,
            "pred": good_pred, "dir": d}


# (command line with placeholders, what the one error line must contain); {out} is a fresh path that
# must not exist afterwards, {file} an existing file used as --out, {latin1} a non-UTF-8 CSV.
BAD_INPUT = [
    ("table1 --manifest {latin1} --out {out}", ["latin1.csv", "not UTF-8", "CSV UTF-8"]),
    ("table1 --manifest {missing} --out {out}", ["missing.csv", "not found"]),
    ("table1 --manifest {pred} --by cohort --out {out}", ["'cohort' not in the manifest"]),
    ("table1 --manifest {pred} --by event --out {file}", ["--out is an existing file"]),
    ("evaluate --predictions {latin1} --reference {pred} --out {out}", ["not UTF-8"]),
    ("evaluate --predictions {missing} --reference {pred} --out {out}", ["predictions file not found"]),
    ("evaluate --predictions {pred} --reference {pred} --out {file}", ["--out is an existing file"]),
    ("evaluate --predictions {pred} --reference {pred} --out {out} --strict", ["also in the reference"]),
    ("evaluate --predictions {pred} --reference {pred} --out {out} --times 0,abc", ["--times"]),
    ("manifest check {latin1}", ["latin1.csv"]),
    ("manifest check {missing}", ["missing.csv", "not found"]),
    ("maps --manifest {latin1} --out {out}", ["not UTF-8"]),
    ("maps --image {image} --mask {missing} --out {out}", ["mask file not found"]),
    ("maps --image {image} --mask {mask} --out {out} --features glcm_Contrsat", ["glcm_Contrsat"]),
    ("maps --image {image} --mask {mask} --out {file}", ["--out is an existing file"]),
    ("convert --manifest {latin1} --out {out}", ["not UTF-8"]),
    ("convert --ct-dir {dir} --rtstruct {missing} --roi GTV --out {out}", ["missing.csv"]),
    ("convert --ct-dir {dir} --rtstruct {image} --roi GTV --out {file}", ["--out is an existing file"]),
    ("preprocess --manifest {latin1} --out {out}", ["latin1.csv"]),
    ("preprocess --image {image} --mask {missing} --out {out}", ["mask file not found"]),
    ("preprocess --image {image} --mask {mask} --out {out} --hu-window -5 30", ["width must be positive"]),
    ("predict --bundle {bundle} --manifest {latin1} --out {out}", ["not UTF-8"]),
    ("predict --bundle {bundle} --image {image} --mask {missing} --out {out}", ["mask file not found"]),
    ("predict --bundle {dir} --image {image} --mask {mask} --out {out}", ["not an inference bundle"]),
    ("predict --bundle {bundle} --image {image} --mask {mask} --out {file}", ["--out is an existing file"]),
    ("demo-data --out {file}", ["--out is an existing file"]),
    ("cv --out {file}", ["--out is an existing file"]),
    ("cv --bundle {dir} --out {out}", ["not a training bundle"]),
]


@pytest.mark.parametrize("line, needles", BAD_INPUT, ids=[b[0].split(" {")[0] + f"-{i}" for i, b in enumerate(BAD_INPUT)])
def test_every_command_reports_bad_input_in_one_line_and_leaves_nothing(line, needles, files, tmp_path, capsys):
    out = tmp_path / "out"
    keep = files["file"].read_text()
    values = {**{k: str(v) for k, v in files.items()}, "out": str(out), "bundle": str(shared_tiny_bundle())}
    rc, _, err = _run(line.format(**values).split(), capsys)
    assert rc == 1, err
    assert_one_error_line(err, *needles)
    assert not out.exists()  # no partial output
    assert files["file"].read_text() == keep


USAGE = [
    "predict --out X",
    "predict --image a.nii.gz --out X",
    "predict --image a --mask b --manifest m.csv --out X",
    "convert --ct-dir C --out X",
    "maps --image a.nii.gz --out X",
    "preprocess --out X",
    "cv --out X --folds 1",
    "cv --out X --folds two",
    "cv --out X --set novalue",
    "evaluate --predictions a.csv",
    "manifest",
    "nosuchcommand",
]


@pytest.mark.parametrize("line", USAGE)
def test_a_command_line_that_cannot_work_exits_2_with_the_usage(line, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(line.split())
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: voxsurv" in err and "Traceback" not in err
    assert not (tmp_path / "X").exists()


def test_cv_with_one_fold_is_refused_at_once(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["cv", "--out", str(tmp_path / "cv"), "--folds", "1"])
    assert info.value.code == 2
    assert "cross-validation needs at least 2 folds" in capsys.readouterr().err
    assert not (tmp_path / "cv").exists()


def test_a_bug_prints_the_traceback_asks_for_a_report_and_exits_3(monkeypatch, tmp_path, capsys):
    import voxsurv.commands.table1 as table1

    def broken(args):
        return 1 / 0

    monkeypatch.setattr(table1, "run", broken)
    rc, _, err = _run(["table1", "--manifest", "m.csv", "--out", tmp_path / "t"], capsys)
    assert rc == 3
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("internal error: this is a bug in voxsurv")
    assert "report it" in err


# ---- checkpoints ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import torch

    d = tmp_path_factory.mktemp("ckpt")
    good = make_training_output(d / "good", seed=1) / "models" / "model.pt"
    data = good.read_bytes()
    (d / "empty.pt").write_bytes(b"")
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    (d / "text.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    (d / "notes.pt").write_text("these are not weights\n")
    torch.save(torch.nn.Linear(2, 2), d / "pickled_model.pt")
    wrong = make_training_output(d / "wrong", features=("firstorder_Mean", "glcm_Contrast", "glcm_Idm"), seed=2,
                                 embed_dim=48)
    return {"empty": d / "empty.pt", "truncated": d / "truncated.pt", "lfs": d / "text.pt", "text": d / "notes.pt",
            "pickled": d / "pickled_model.pt", "wrong_architecture": wrong / "models" / "model.pt"}


CHECKPOINT_PROBLEMS = {
    "empty": "weights file is empty (0 bytes)",
    "truncated": "weights file is truncated or corrupt",
    "lfs": "weights file is a Git LFS pointer",
    "text": "weights file is a text file, not PyTorch weights",
    "pickled": "weights file holds pickled Python objects besides tensors",
    "wrong_architecture": "weights do not fit the bundle's network: in_channels 5 (bundle: 4)",
}


@pytest.mark.parametrize("kind", list(CHECKPOINT_PROBLEMS))
def test_a_bad_checkpoint_says_what_is_wrong_with_the_file(kind, checkpoints, files, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = _run(["predict", "--bundle", shared_tiny_bundle(), "--image", files["image"], "--mask",
                       files["mask"], "--checkpoint", checkpoints[kind], "--out", out], capsys)
    assert rc == 1
    assert_one_error_line(err, CHECKPOINT_PROBLEMS[kind], Path(checkpoints[kind]).name)
    assert not out.exists()


def test_wrong_architecture_message_is_not_cut_short(checkpoints):
    """Every differing setting is named with both values (the old message stopped at torch's first
    line, "Error(s) in loading state_dict for ...")."""
    from voxsurv.core.errors import InputError
    from voxsurv.inference.predictor import RiskPredictor

    with pytest.raises(InputError) as info:
        RiskPredictor(shared_tiny_bundle(), checkpoint=checkpoints["wrong_architecture"])
    msg = info.value.problem
    assert "in_channels 5 (bundle: 4)" in msg and "embed_dim 48 (bundle: 32)" in msg
    assert "Error(s) in loading state_dict" not in msg and "inference_info.json" in info.value.fix


def test_a_state_dict_that_fits_no_layer_names_the_mismatches():
    import torch

    from voxsurv.inference.checkpoint_file import describe_mismatch

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 1))
    state = {"0.weight": torch.zeros(8, 5, 3, 3), "0.bias": torch.zeros(8), "extra.weight": torch.zeros(1)}
    msg = describe_mismatch(net, state)
    assert "first layer takes 5 input channels, this bundle's network 3" in msg
    assert "0.weight: checkpoint [8, 5, 3, 3] vs network [8, 3, 3, 3]" in msg
    assert "2 parameter(s) missing from the checkpoint (1.weight, 1.bias)" in msg
    assert "1 unexpected parameter(s) in the checkpoint (extra.weight)" in msg


# ---- quiet stderr, --verbose, progress -------------------------------------------------------
def test_default_stderr_has_no_library_noise_and_verbose_shows_it(files, tmp_path):
    """In a fresh process (library notices appear at import): no nvImageCodec notice, no
    'selective scan backend' lines, no Python warnings; --verbose shows the INFO lines."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "voxsurv", "predict", "--bundle", str(shared_tiny_bundle()), "--image",
            str(files["image"]), "--mask", str(files["mask"])]
    quiet = subprocess.run(base + ["--out", str(tmp_path / "a")], capture_output=True, text=True, env=env,
                           timeout=600)
    assert quiet.returncode == 0, quiet.stderr
    noise = [ln for ln in quiet.stderr.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert noise == [], noise
    assert "nvImageCodec" not in quiet.stderr and "selective scan" not in quiet.stderr
    loud = subprocess.run(base + ["--out", str(tmp_path / "b"), "--verbose"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert loud.returncode == 0, loud.stderr
    assert "selective scan backend" in loud.stderr and "nvImageCodec" in loud.stderr


class _Terminal:
    """A stderr that says it is a terminal (progress is drawn only there)."""

    def __init__(self) -> None:
        import io

        self.buffer = io.StringIO()

    def write(self, text):
        return self.buffer.write(text)

    def flush(self):
        pass

    def isatty(self):
        return True

    def fileno(self):
        raise OSError("not a real terminal")


def test_progress_on_a_terminal_only_and_never_with_quiet(files, tmp_path, monkeypatch, capsys):
    import sys

    bundle = shared_tiny_bundle()
    man = tmp_path / "m.csv"
    pd.DataFrame([{"patient_id": "t1", "image": files["image"], "mask": files["mask"]}]).to_csv(man, index=False)
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert main(["predict", "--bundle", str(bundle), "--manifest", str(man), "--out", str(tmp_path / "o1"),
                 "--workers", "0"]) == 0
    shown = term.buffer.getvalue()
    assert "predict: 100%" in shown and "1/1" in shown  # the cohort's tqdm bar
    term2 = _Terminal()
    monkeypatch.setattr(sys, "stderr", term2)
    assert main(["predict", "--bundle", str(bundle), "--image", str(files["image"]), "--mask", str(files["mask"]),
                 "--out", str(tmp_path / "o2")]) == 0
    steps = term2.buffer.getvalue()
    assert "[1/4]" in steps and "[4/4]" in steps and "done in" in steps  # per-step lines for one patient
    term3 = _Terminal()
    monkeypatch.setattr(sys, "stderr", term3)
    assert main(["predict", "--bundle", str(bundle), "--manifest", str(man), "--out", str(tmp_path / "o3"),
                 "--workers", "0", "--quiet"]) == 0
    assert "100%" not in term3.buffer.getvalue() and "[1/" not in term3.buffer.getvalue()
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["predict", "--bundle", str(bundle), "--manifest", str(man), "--out", str(tmp_path / "o4"),
                 "--workers", "0"]) == 0
    assert "100%" not in capsys.readouterr().err  # not a terminal: no bar
