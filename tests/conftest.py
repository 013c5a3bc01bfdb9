"""Shared fixtures. Real reference data lives in ../shared/data beside the checkout (CI lays a
copy there too); VOXSURV_SHARED_DATA overrides the location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    env = os.environ.get("VOXSURV_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "README.md").exists():
        pytest.skip(f"reference data not found at {path} (set VOXSURV_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def lung_crops(shared_data) -> Path:
    return shared_data / "lung_crops"


@pytest.fixture(scope="session")
def ibsi(shared_data) -> Path:
    return shared_data / "ibsi"


@pytest.fixture(autouse=True, scope="session")
def _few_threads():
    """Tests share 2 cores with each other in CI; keep torch from oversubscribing."""
    try:
        import torch

        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    except ImportError:
        pass
    yield
