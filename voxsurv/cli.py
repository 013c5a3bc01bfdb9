"""The `voxsurv` command line. Each sub-command lives in its own module under
`voxsurv.commands` and exposes `register(subparsers)`; the module is imported only to build
the parser, and heavy imports happen inside the command's handler, so `voxsurv --help` is fast.

Every sub-command fails the same way (the contract lives here, not in the commands):
- bad input (``InputError``, a file that cannot be read or written): exit 1 and ONE line
  ``error: <patient or file>: <problem>. Fix: <what to do>``, no traceback;
- a command line that cannot work: exit 2 with the usage (argparse, or ``UsageError``);
- a bug in voxsurv: the traceback, a line asking to report it, exit 3;
- Ctrl-C: exit 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from voxsurv import __version__
from voxsurv import commands as _commands_pkg
from voxsurv.commands import output_options
from voxsurv.core.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_USAGE, InputError, UsageError

REPORT_BUG = ("internal error: this is a bug in voxsurv {version}, not a problem with your input. Please "
              "report it (the command line and the traceback above) to the voxsurv maintainers.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxsurv", parents=[output_options()],
        description="Survival prediction from CT + tumour contour: ingestion, voxel radiomics maps, "
                    "training bundles, evaluation and inference.",
        epilog="Exit status: 0 done, 1 bad input (one 'error:' line says what and how to fix it), 2 wrong "
               "command line, 3 internal error (please report).")
    parser.add_argument("--version", action="version", version=f"voxsurv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parents = [output_options()]
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        module.register(_SubParsers(sub, parents))
    return parser


class _SubParsers:
    """``sub.add_parser`` that gives every command the shared output options."""

    def __init__(self, sub, parents) -> None:
        self._sub, self._parents = sub, parents

    def add_parser(self, name: str, **kwargs):
        kwargs["parents"] = [*kwargs.get("parents", []), *self._parents]
        return self._sub.add_parser(name, **kwargs)

    @property
    def choices(self):
        return self._sub.choices


def main(argv: list[str] | None = None) -> int:
    from voxsurv.core import console

    words = sys.argv[1:] if argv is None else list(argv)
    # configured before parsing: deprecated option spellings warn while argparse reads them
    console.configure(verbose=bool({"-v", "--verbose"} & set(words)), quiet=bool({"-q", "--quiet"} & set(words)))
    parser = build_parser()
    args = parser.parse_args(argv)
    # main() without argv is the program itself (console script, python -m voxsurv), whose process ends
    # with the command; a caller passing argv (tests, scripts) keeps its process as it was
    args.owns_process = argv is None
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    return run_handler(args, parser)


def run_handler(args, parser: argparse.ArgumentParser) -> int:
    """Run ``args.handler`` under the error contract (see the module docstring)."""
    import traceback

    from voxsurv.core.errors import input_error_in, os_error_as_input_error
    from voxsurv.core.privacy import redact

    try:
        return int(args.handler(args) or 0)
    except UsageError as err:
        sub = _subparser(parser, args)
        sub.error(str(err))  # prints usage, exits 2
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C): nothing half-written is left; cohort commands keep their finished patients "
              "and resume when the same command runs again", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the contract: bad input -> 1, anything else -> 3
        err = input_error_in(exc)
        if err is None and isinstance(exc, OSError):
            err = os_error_as_input_error(exc)
        if err is None and isinstance(exc, MemoryError):
            err = InputError("not enough memory for this input", fix="close other programs, or use a machine "
                             "with more memory")
        if err is not None:
            print(redact(err.cli_line()), file=sys.stderr)
            return EXIT_BAD_INPUT
        traceback.print_exc()
        print(REPORT_BUG.format(version=__version__), file=sys.stderr)
        return EXIT_INTERNAL


def _subparser(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    for action in parser._actions:  # noqa: SLF001 - argparse keeps sub-parsers here
        if isinstance(action, argparse._SubParsersAction) and args.command in action.choices:  # noqa: SLF001
            return action.choices[args.command]
    return parser


if __name__ == "__main__":
    sys.exit(main())
