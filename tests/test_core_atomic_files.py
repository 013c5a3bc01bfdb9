"""voxsurv.core.atomic_files: the one place every JSON/CSV/text/maps-cache write goes through."""

from __future__ import annotations

import json
import os
import stat

import pandas as pd
import pytest

from voxsurv.core.atomic_files import write_atomic
from voxsurv.core.jsonfile import write_json_atomic
from voxsurv.core.tables import write_csv_atomic, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_text_atomic("old\n", tmp_path / "sub" / "a.txt")
    assert path.read_text() == "old\n"

    def half_then_fail(f):
        f.write("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_then_fail, encoding="utf-8")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_every_writer_leaves_a_world_readable_complete_file(tmp_path):
    json_path = write_json_atomic(tmp_path / "a.json", {"x": 0.1})
    csv_path = write_csv_atomic(pd.DataFrame({"patient_id": ["p1"], "risk": [0.5]}), tmp_path / "a.csv")
    bin_path = write_atomic(tmp_path / "a.bin", lambda f: f.write(b"\x00\x01"), binary=True)
    for p in (json_path, csv_path, bin_path):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o644
    assert json.loads(json_path.read_text()) == {"x": 0.1} and json_path.read_text().endswith("}\n")
    assert json_path.read_text().startswith('{\n    "x"')  # the model zoo's 4-space layout
    assert csv_path.read_text() == "patient_id,risk\np1,0.5\n"
    assert bin_path.read_bytes() == b"\x00\x01"
