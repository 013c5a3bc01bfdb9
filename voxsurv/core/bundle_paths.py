"""Where the bundles and their default data live, so `python -m monai.bundle run --config_file
bundles/<name>/configs/train.yaml` works from the repository root (and from elsewhere when voxsurv
is installed from the checkout)."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The checkout holding `bundles/` (the current folder when it has one, else voxsurv's parent)."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (base / "bundles").is_dir():
            return base.resolve()
    return Path.cwd().resolve()


def bundle_root(name: str) -> str:
    """Absolute path of `bundles/<name>`."""
    return str(repo_root() / "bundles" / name)
