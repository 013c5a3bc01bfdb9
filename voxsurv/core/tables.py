"""CSV tables the user gives us and the ones we write.

Reading: one function that turns what pandas raises on a file a user made (not UTF-8 text, not
CSV, empty) into an InputError naming the file and the fix. Writing: temporary file in the same
folder + rename, so a reader (or an interrupted run) never sees half a table.
"""

from __future__ import annotations

from pathlib import Path

from voxsurv.core.atomic_files import write_atomic
from voxsurv.core.errors import InputError


def read_csv_table(path: str | Path, what: str = "table", **kwargs):
    """``pandas.read_csv`` for a user's file, with bad files as InputError (``what`` names the file's
    role in the message: "manifest", "predictions")."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found" if not path.is_dir() else f"{what} is a folder, not a CSV file",
                         path=str(path), fix="check the path")
    try:
        return pd.read_csv(path, encoding=kwargs.pop("encoding", "utf-8"), **kwargs)
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text ({_first_non_utf8(path)})",
                         path=str(path), fix="save the file as CSV UTF-8 (in Excel: Save As > 'CSV UTF-8')") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} is empty", path=str(path), fix="give a CSV file with a header row") from None
    except pd.errors.ParserError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
        raise InputError(f"{what} is not a readable CSV table ({first})", path=str(path),
                         fix="check the file is comma-separated with one header row") from None


def _first_non_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        return f"byte 0x{data[exc.start]:02x} on line {line}"
    return "undecodable bytes"


def write_csv_atomic(table, path: str | Path) -> Path:
    """Write a DataFrame as CSV, atomically (voxsurv.core.atomic_files)."""
    return write_atomic(path, lambda f: table.to_csv(f, index=False), encoding="utf-8", newline="")


def write_text_atomic(text: str, path: str | Path) -> Path:
    """Write text, atomically (voxsurv.core.atomic_files)."""
    return write_atomic(path, lambda f: f.write(text), encoding="utf-8")
