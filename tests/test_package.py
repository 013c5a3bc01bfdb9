"""The package installs, and `voxsurv --help` lists the sub-commands."""

import subprocess
import sys


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "voxsurv", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "usage: voxsurv" in out.stdout


def test_input_error_names_patient_file_and_fix():
    from voxsurv.core.errors import InputError

    err = InputError("mask is empty", patient_id="lung1-007", path="m.nii.gz", fix="re-export the GTV")
    assert str(err) == "patient lung1-007: mask is empty (m.nii.gz). Fix: re-export the GTV"
    assert str(InputError("bad").with_patient("p1")) == "patient p1: bad"
