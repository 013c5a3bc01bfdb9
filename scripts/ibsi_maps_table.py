"""Print the IBSI digital-phantom table of docs/maps.md (markdown), optionally as CSV too.

    .venv/bin/python scripts/ibsi_maps_table.py [--backend pyradiomics|torch] [--csv OUT]
"""

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voxsurv.maps.ibsi import digital_phantom_table, markdown_table  # noqa: E402


def shared_data_dir() -> Path:
    """../shared/data beside the checkout, or $VOXSURV_SHARED_DATA (as tests/conftest.py)."""
    env = os.environ.get("VOXSURV_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--backend", default="pyradiomics", choices=("pyradiomics", "torch"))
    p.add_argument("--csv")
    args = p.parse_args()
    table = digital_phantom_table(shared_data_dir() / "ibsi", texture_backend=args.backend)
    print(markdown_table(table))
    print(f"\n{int(table['match'].sum())}/{len(table)} match", file=sys.stderr)
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
