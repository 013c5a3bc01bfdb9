"""Output locations every command checks the same way, before doing any work: ``--out`` must be
a folder this user can write; earlier results are replaced only with ``--overwrite``; a command's
files appear all at once (staged in a hidden folder), so a failure leaves no partial output.
"""

from __future__ import annotations

import os
from pathlib import Path

from voxsurv.core.errors import InputError


def check_output_folder(out: str | Path, option: str = "--out") -> Path:
    """Refuse, before any work, an output location that is an existing file or a folder (or
    parent) this user cannot write. Creates nothing."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} is an existing file, not a folder", path=str(out),
                         fix=f"give {option} a folder path (new or existing)")
    probe = out
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{option} lies below a file ({probe})", path=str(out), fix=f"choose another {option}")
    if not _writable(probe):
        raise InputError(f"{option} is not writable ({probe} is read-only for this user)", path=str(out),
                         fix=f"choose a {option} folder you can write to")
    return out


def _writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, not asked (``os.access`` says yes to
    root on read-only mounts and pseudo file systems)."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".voxsurv-write-test-")
    except OSError:
        return False
    os.close(fd)
    os.unlink(tmp)
    return True


def refuse_to_replace(out: Path, names, overwrite: bool, option: str = "--out") -> None:
    """Results already in ``out`` are never replaced silently: only ``--overwrite`` replaces them."""
    existing = sorted(n for n in names if (Path(out) / n).exists())
    if existing and not overwrite:
        shown = ", ".join(existing[:4]) + (f" and {len(existing) - 4} more" if len(existing) > 4 else "")
        raise InputError(f"{option} already holds results of an earlier run ({shown})", path=str(out),
                         fix=f"pass --overwrite to replace them, or choose another {option}")


class staged_outputs:  # noqa: N801 - used as a context manager, reads like one
    """Write a command's files into a hidden folder inside ``out`` and move them into ``out`` only
    when everything was written: a failure (or Ctrl-C) leaves no partial output, and ``out`` is
    removed again when this run created it.

        with staged_outputs(out) as stage:
            write(stage / "metrics.json")
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    def __enter__(self) -> Path:
        import tempfile

        self.created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=".voxsurv-partial-", dir=self.out))
        return self.stage

    def __exit__(self, exc_type, exc, tb) -> None:
        import shutil

        if exc_type is None:
            for item in sorted(self.stage.iterdir()):
                target = self.out / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(item, target)
        shutil.rmtree(self.stage, ignore_errors=True)
        if exc_type is not None and self.created:
            shutil.rmtree(self.out, ignore_errors=True)
