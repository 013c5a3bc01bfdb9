"""``python -m voxsurv.core.upgrade_paths [--write] FILE...``: list, or rewrite, the import paths
that moved in issue 14 (voxsurv.core.renamed.MOVED) in old configs and scripts, e.g. a run's
config_resolved.json. A module of its own: ``import voxsurv`` already imports voxsurv.core.renamed,
which therefore cannot also be run with ``-m``."""

from __future__ import annotations

import argparse
from pathlib import Path

from voxsurv.core.renamed import rewrite
from voxsurv.core.tables import write_text_atomic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxsurv.core.upgrade_paths",
                                description="List (or --write: replace) import paths that moved in issue 14.")
    p.add_argument("files", nargs="+", help="config files (YAML/JSON), scripts")
    p.add_argument("--write", action="store_true", help="rewrite the files in place (atomically)")
    args = p.parse_args(argv)
    changed = 0
    for name in args.files:
        path = Path(name)
        text, found = rewrite(path.read_text(encoding="utf-8"))
        for old, new in sorted(set(found)):
            print(f"{path}: {old} -> {new} ({sum(1 for f in found if f[0] == old)}x)")
        if found:
            changed += 1
            if args.write:
                write_text_atomic(text, path)
    verb = "rewritten" if args.write else "to rewrite (pass --write)"
    print(f"{changed} of {len(args.files)} file(s) {verb}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
