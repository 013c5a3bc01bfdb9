"""What a `voxsurv` command shows on the terminal, and what it keeps quiet.

- stdout: the results (one summary line per command, file names written).
- stderr: ``error: ...`` lines, ``warning: ...`` lines the user can act on, and progress (a tqdm
  bar for cohort commands, one line per step for long single-patient work) when stderr is a
  terminal and ``--quiet`` is not given.
- Library chatter (MONAI's nvImageCodec notice, PyTorch/lifelines warnings, INFO logs) is hidden
  unless ``--verbose``: a user cannot act on it, and it buries the lines that matter.

Cheap to import (no torch): `voxsurv --help` must stay fast.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from contextlib import contextmanager

#: our own packages: their warnings are shown by default, library warnings only with --verbose
OWN_PACKAGES = ("voxsurv", "custom_transforms", "networks")

_STATE = {"verbose": False, "quiet": False, "progress": None}


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at the time of the record (test
    runners and notebooks replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # noqa: D401 - property required by StreamHandler
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


class _DefaultFilter(logging.Filter):
    """Default (not verbose) mode: our warnings and everyone's errors; library warnings are noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        own = record.name.split(".")[0] in OWN_PACKAGES or record.name == "py.warnings.own"
        return own and record.levelno >= logging.WARNING


class _PlainFormatter(logging.Formatter):
    """``warning: message`` / ``error: message`` (the level in lower case, no time or logger)."""

    def format(self, record: logging.LogRecord) -> str:
        from voxsurv.core.privacy import redact

        return f"{record.levelname.lower()}: {redact(record.getMessage())}"


_HANDLER_TAG = "_voxsurv_console"


def configure(verbose: bool = False, quiet: bool = False) -> None:
    """Set up logging and warnings for one command run (idempotent: replaces its own handler)."""
    from voxsurv.core.privacy import RedactingFilter

    _STATE.update(verbose=bool(verbose), quiet=bool(quiet) and not verbose)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_TAG, False):
            root.removeHandler(h)
    handler = _StderrHandler()
    setattr(handler, _HANDLER_TAG, True)
    handler.addFilter(RedactingFilter())
    if verbose:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.DEBUG)
        for noisy in ("matplotlib", "PIL", "fsspec", "asyncio", "urllib3", "h5py", "numba"):
            logging.getLogger(noisy).setLevel(logging.INFO)
    else:
        handler.setFormatter(_PlainFormatter())
        handler.addFilter(_DefaultFilter())
        root.setLevel(logging.ERROR if _STATE["quiet"] else logging.WARNING)
    root.addHandler(handler)
    _quiet_library_loggers(verbose)
    _configure_warnings(verbose)


def _quiet_library_loggers(verbose: bool) -> None:
    """MONAI gives some loggers their own stderr handler (propagate=False); in default mode those
    handlers get the same filter, so e.g. the nvImageCodec notice does not reach the user."""
    import sys as _sys

    root_handlers = set(logging.root.handlers)
    for name, lg in list(logging.root.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger) or name.split(".")[0] in OWN_PACKAGES:
            continue
        for h in lg.handlers:
            if (getattr(h, _HANDLER_TAG, False) or h in root_handlers or type(h) is not logging.StreamHandler
                    or getattr(h, "stream", None) not in (_sys.stderr, _sys.stdout, _sys.__stderr__, _sys.__stdout__)):
                continue
            for f in list(h.filters):
                if isinstance(f, _DefaultFilter):
                    h.removeFilter(f)
            if not verbose:
                h.addFilter(_DefaultFilter())


def _configure_warnings(verbose: bool) -> None:
    warnings.resetwarnings()
    if verbose:
        warnings.simplefilter("default")
        warnings.showwarning = _show_warning
        return
    warnings.simplefilter("ignore")  # library warnings (torch, MONAI, lifelines, ...)
    for pkg in OWN_PACKAGES:  # warnings raised in our own code are about the user's data: show
        warnings.filterwarnings("default", module=rf"{pkg}(\..*)?$")
    warnings.showwarning = _show_warning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    logger = logging.getLogger("py.warnings.own")
    if _STATE["verbose"]:
        logger.warning("%s (%s, %s:%d)", message, category.__name__, filename, lineno)
    else:
        logger.warning("%s", message)


def silence_library_noise() -> None:
    """Call after importing MONAI (which installs its own logger handlers) to filter them too."""
    _quiet_library_loggers(_STATE["verbose"])


def deprecated_option(old: str, new: str, meaning: str = "") -> None:
    """One warning per use of an old option spelling (kept as an alias for one release)."""
    extra = f" ({meaning})" if meaning else ""
    logging.getLogger("voxsurv.cli").warning("%s is deprecated and will be removed in the next release: use "
                                             "%s%s", old, new, extra)


def warn(message: str) -> None:
    """A ``warning: ...`` line on stderr (shown unless --quiet)."""
    logging.getLogger("voxsurv").warning("%s", message)


# ---- progress ---------------------------------------------------------------------------------
def progress_enabled() -> bool:
    """Progress is drawn on a terminal only, and never with --quiet."""
    if _STATE["quiet"]:
        return False
    forced = _STATE["progress"]
    if forced is not None:
        return bool(forced)
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "patient"):
    """tqdm on stderr when progress is enabled, else a silent pass-through with the same API."""
    if progress_enabled():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                    leave=True)
    return _NoBar(iterable)


class _NoBar:
    def __init__(self, iterable=None) -> None:
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, *_a, **_k) -> None:
        pass

    def write(self, *_a, **_k) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


class Steps:
    """Per-step lines for long single-patient work: ``[2/5] computing 16 radiomics maps ...`` then
    ``done in 3.1 s`` (only when progress is enabled)."""

    def __init__(self, total: int, label: str = "") -> None:
        self.total, self.label, self.n = total, label, 0

    @contextmanager
    def step(self, text: str):
        self.n += 1
        enabled = progress_enabled()
        start = time.perf_counter()
        if enabled:
            prefix = f"{self.label}: " if self.label else ""
            print(f"[{self.n}/{self.total}] {prefix}{text} ...", end="", file=sys.stderr, flush=True)
        ok = False
        try:
            yield
            ok = True
        finally:
            if enabled:
                print(f" {'done' if ok else 'stopped'} in {time.perf_counter() - start:.1f} s", file=sys.stderr,
                      flush=True)


def verbose() -> bool:
    """True when the user asked for --verbose."""
    return bool(_STATE["verbose"])
