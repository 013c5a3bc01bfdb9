"""Sub-commands of `voxsurv`: one module per command, each with `register(subparsers)`.

A command module sets `handler=` on its parser via `set_defaults`; the handler returns the exit
code, raises ``InputError`` for bad input and ``UsageError`` for a command line that cannot
work (`voxsurv.cli` turns both into the one error contract). Keep imports of
torch/SimpleITK/PyRadiomics inside the handler.

Options mean the same in every command (docs/commands.md lists them):
``--out DIR`` output folder; ``--manifest CSV``; ``--image``/``--mask``; ``--spacing X Y Z`` (mm);
``--hu-window WIDTH LEVEL``; ``--bundle PATH`` (a bundle folder); ``--workers N`` (processes);
``--overwrite`` (the only way to replace earlier results). Old spellings stay one release as
deprecated aliases (:func:`deprecated_alias`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from voxsurv.core.errors import InputError
from voxsurv.core.output_paths import check_output_folder, refuse_to_replace, staged_outputs  # noqa: F401 (re-export)


def output_options() -> argparse.ArgumentParser:
    """--verbose / --quiet for every sub-command (also accepted before the command name)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("output")
    g.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show library warnings and debug logs")
    g.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress and no warnings; errors and results only")
    return p


def deprecated_alias(parser, old: str, dest: str, new: str, convert=None, **kwargs) -> None:
    """Accept the old option spelling ``old`` for one release: it sets ``dest`` (after
    ``convert(value)``, for a changed meaning) and prints a deprecation warning naming ``new``."""

    class _Alias(argparse.Action):
        deprecated_alias = True  # tests and docs tell these apart from the current options

        def __call__(self, p, namespace, values, option_string=None):
            from voxsurv.core.console import deprecated_option

            deprecated_option(old, new)
            setattr(namespace, dest, convert(values) if convert else values)

    kwargs.setdefault("help", f"deprecated spelling of {new}")
    parser.add_argument(old, dest=f"_deprecated_{dest}_{old.strip('-').replace('-', '_')}", action=_Alias,
                        default=argparse.SUPPRESS, **kwargs)


def window_bounds(width_level) -> tuple[float, float]:
    """(LOW, HIGH) HU of a (WIDTH, LEVEL) window: 250 30 -> -95 155."""
    width, level = (float(v) for v in width_level)
    if width <= 0:
        raise InputError(f"--hu-window width must be positive, got {width:g}", fix="give WIDTH LEVEL, e.g. 250 30")
    return level - width / 2.0, level + width / 2.0


def width_level(low_high) -> tuple[float, float]:
    """(WIDTH, LEVEL) of a (LOW, HIGH) HU window: -95 155 -> 250 30."""
    low, high = (float(v) for v in low_high)
    return high - low, (low + high) / 2.0


def resolve_bundle(value: str, kind: str) -> Path:
    """A ``--bundle`` value as a bundle folder: a path (absolute, or relative to the current folder);
    the shipped bundles are also found by path from outside the checkout (``bundles/inference``
    resolves against voxsurv's checkout when the current folder has none)."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path.resolve()
    if not path.is_absolute():
        checkout = Path(__file__).resolve().parents[2]
        if (checkout / path).is_dir():
            return (checkout / path).resolve()
    raise InputError(f"{kind} bundle folder not found", path=str(value),
                     fix=f"pass --bundle PATH to a bundle folder, e.g. bundles/{kind}")
