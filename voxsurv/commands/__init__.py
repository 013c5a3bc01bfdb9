"""Sub-commands of `voxsurv`: one module per command, each with `register(subparsers)`.

A command module sets `handler=` on its parser via `set_defaults`; the handler returns the exit
code. Keep imports of torch/SimpleITK/PyRadiomics inside the handler.
"""

from __future__ import annotations

import functools
import sys


def reports_bad_input(handler):
    """Decorate a handler so bad input (InputError) prints ``INVALID: <message>`` on stderr and
    exits 1, without a traceback; the message already says what is wrong and how to fix it."""
    from voxsurv.errors import InputError

    @functools.wraps(handler)
    def run(args) -> int:
        try:
            return handler(args)
        except InputError as err:
            print(f"INVALID: {err}", file=sys.stderr)
            return 1

    return run
