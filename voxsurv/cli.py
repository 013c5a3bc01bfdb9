"""The `voxsurv` command line. Each sub-command lives in its own module under
`voxsurv.commands` and exposes `register(subparsers)`; the module is imported only to build
the parser, and heavy imports happen inside the command's handler, so `voxsurv --help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from voxsurv import __version__
from voxsurv import commands as _commands_pkg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxsurv",
        description="Survival prediction from CT + tumour contour: ingestion, voxel radiomics maps, "
                    "training bundles, evaluation and inference.")
    parser.add_argument("--version", action="version", version=f"voxsurv {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(_commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
