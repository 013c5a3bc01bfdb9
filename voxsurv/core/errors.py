"""One error type for bad input, so batch jobs can record an exclusion and go on, and the one
line every `voxsurv` command prints for it.

Every message names the patient (when known), the file, the problem and, where there is one,
the fix: "patient lung1-007: mask is empty (images/lung1-007_gtv.nii.gz). Fix: ...". On the
command line the same error reads ``error: <patient or file>: <problem>. Fix: <what to do>``.
"""

from __future__ import annotations

#: exit status of a `voxsurv` command: success, bad input, usage (argparse's), internal bug
EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
#: said when a lower layer raised an InputError without a fix
GENERIC_FIX = "correct the input named here and run the command again"


class InputError(ValueError):
    """Bad input for one patient (or one file). Batch jobs catch it, record it and continue."""

    def __init__(self, problem: str, patient_id: str | None = None, path: str | None = None,
                 fix: str | None = None):
        self.problem = problem
        self.patient_id = patient_id
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        who = f"patient {self.patient_id}: " if self.patient_id else ""
        where = f" ({self.path})" if self.path else ""
        fix = f". Fix: {self.fix}" if self.fix else ""
        return f"{who}{self.problem}{where}{fix}"

    def with_patient(self, patient_id: str) -> "InputError":
        """The same error, now naming the patient (for lower layers that only knew the file)."""
        if self.patient_id:
            return self
        return InputError(self.problem, patient_id=patient_id, path=self.path, fix=self.fix)

    def cli_line(self) -> str:
        """``error: <patient or file>: <problem>. Fix: <what to do>`` on one line."""
        return error_line(self.problem, patient_id=self.patient_id, path=self.path, fix=self.fix)


class UsageError(Exception):
    """A command line that cannot work (options missing or contradicting each other): the command
    prints its usage and exits 2, like argparse does for the errors it finds itself."""


def error_line(problem: str, patient_id: str | None = None, path: str | None = None,
               fix: str | None = None) -> str:
    """The command-line form of a bad-input error: one line, subject first (the patient, else the
    file), then the problem, then the fix. Multi-line problems are joined with "; "."""
    subject = f"patient {patient_id}" if patient_id else (str(path) if path else "input")
    where = f" ({path})" if patient_id and path else ""
    parts = [part.strip() for part in str(problem).splitlines() if part.strip()]
    text = "; ".join(p[2:] if p.startswith("- ") else p for p in parts)
    text = text.rstrip(" .:;")
    fix_text = " ".join(str(fix or GENERIC_FIX).split()).rstrip(".")
    return f"error: {subject}: {text}{where}. Fix: {fix_text}."


def input_error_in(exc: BaseException | None) -> InputError | None:
    """The InputError behind `exc`, if any: MONAI's Compose and DataLoader wrap transform errors
    (RuntimeError, chained), so batch jobs follow the cause/context chain (at most 10 links)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, InputError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def os_error_as_input_error(exc: OSError) -> InputError | None:
    """A file-system error about a path the user gave (missing, not writable, a folder where a file
    belongs, disk full) as an InputError with a fix; None for OS errors without a file name."""
    import errno

    path = exc.filename
    if path is None:
        return None
    fixes = {
        errno.ENOENT: ("not found", "check the path"),
        errno.EACCES: ("permission denied", "choose a location you may read/write, or change its permissions"),
        errno.EPERM: ("operation not permitted", "choose a location you may read/write"),
        errno.EROFS: ("read-only file system", "write to a writable location"),
        errno.EISDIR: ("is a folder, a file was expected", "give a file path"),
        errno.ENOTDIR: ("a file stands where a folder is needed", "give a folder path (or remove the file)"),
        errno.EEXIST: ("already exists", "choose another path, or remove it"),
        errno.ENOSPC: ("no space left on the device", "free disk space or write elsewhere"),
    }
    problem, fix = fixes.get(exc.errno, (exc.strerror or type(exc).__name__, "check the path"))
    return InputError(problem, path=str(path), fix=fix)
