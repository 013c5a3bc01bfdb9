"""Issue 14: layers that import only downward, enforced by the import-linter contracts in setup.cfg
(the same check .ci/run runs as `lint-imports`), and import names that cannot clash.

The contracts must pass on the tree AND fail on a deliberately wrong import: each case below copies
the three packages into a temporary folder, adds one bad import there and runs import-linter on the
copy; exactly the contracts that import must break are reported broken."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is in the test extra (pip install -e '.[test]')")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("voxsurv", "custom_transforms", "networks")
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def contract_names() -> dict[str, str]:
    """contract id -> name, from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    prefix = "importlinter:contract:"
    return {s[len(prefix):]: cfg[s]["name"] for s in cfg.sections() if s.startswith(prefix)}


def lint_imports(root: Path) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    """import-linter on the packages under ``root`` with ``root/setup.cfg`` (no cache: a fresh
    graph). Returns the process and {contract name: KEPT | BROKEN} from its summary."""
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-c", LINT, "--no-cache", "--no-logo", str(root / "setup.cfg")],
                         cwd=root, env=env, capture_output=True, text=True, timeout=300)
    status = {name: s for name, s in re.findall(r"^(.+?) (KEPT|BROKEN)(?: \(.*\))?$", out.stdout, flags=re.M)}
    return out, status


def test_contract_names_fit_on_one_summary_line():
    """The summary parser above needs each name on one line (import-linter wraps at 80 columns)."""
    names = contract_names()
    assert {"layers", "every-part-has-a-layer", "package-root", "plain-networks", "no-cycles"} <= set(names)
    assert all(len(n) + len(" BROKEN") <= 80 for n in names.values()), names


def test_the_contracts_hold_on_the_tree():
    out, status = lint_imports(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert status == {name: "KEPT" for name in contract_names().values()}, out.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory):
    """The three packages' Python files + setup.cfg, copied (the contracts read nothing else)."""
    root = tmp_path_factory.mktemp("layers")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, root / pkg, ignore=lambda d, names: [n for n in names if n == "__pycache__" or (
            not n.endswith(".py") and not (Path(d) / n).is_dir())])
    shutil.copy(ROOT / "setup.cfg", root / "setup.cfg")
    return root


# case: (file to edit, line appended, ids of the contracts that must break -- and no others)
WRONG = {
    "upward import: statistics use the training package": (
        "voxsurv/stats/metrics.py", "from voxsurv.training import folds", {"layers", "every-part-has-a-layer"}),
    "the old cycle: the cohort maps runner reads the manifest": (
        "voxsurv/maps/cohort.py", "from voxsurv.data.manifest import load_manifest",
        {"layers", "every-part-has-a-layer"}),
    "the lowest layer imports a transform": (
        "voxsurv/core/errors.py", "import custom_transforms.spatial", {"layers"}),
    "a cycle inside one package": (
        "custom_transforms/spatial.py", "from custom_transforms.pipeline import volume_preprocessing", {"no-cycles"}),
    "networks depend on the application": (
        "networks/anchor.py", "from voxsurv.core.errors import InputError", {"plain-networks"}),
    "importing voxsurv pulls in a subpackage": (
        "voxsurv/__init__.py", "import voxsurv.core.errors", {"package-root"}),
    "a new module under voxsurv without a layer": (
        "voxsurv/extras.py", "X = 1", {"every-part-has-a-layer"}),
}


@pytest.mark.parametrize("case", list(WRONG))
def test_a_wrong_import_breaks_the_contract(tree_copy, case):
    path, line, must_break = WRONG[case]
    target = tree_copy / path
    before = target.read_text() if target.exists() else None
    try:
        target.write_text((before or "") + f"\n{line}\n")
        out, status = lint_imports(tree_copy)
    finally:
        if before is None:
            target.unlink()
        else:
            target.write_text(before)
    names = contract_names()
    assert out.returncode != 0, out.stdout
    assert status == {names[c]: ("BROKEN" if c in must_break else "KEPT") for c in names}, out.stdout


def test_the_copy_is_clean_again(tree_copy):
    """The cases above restore every file: the copy passes, so each failure came from its one line."""
    out, _ = lint_imports(tree_copy)
    assert out.returncode == 0, out.stdout


def test_only_three_top_level_import_names_are_installed(tmp_path):
    """What setuptools installs (the distribution's top_level.txt, built from setup.cfg here): voxsurv,
    custom_transforms and networks; generic names such as `survival` could clash in a user's env."""
    subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=ROOT,
                   check=True, capture_output=True, timeout=120)
    (top_level,) = tmp_path.glob("*.egg-info/top_level.txt")
    assert sorted(top_level.read_text().split()) == sorted(PACKAGES)
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk == set(PACKAGES), "a package folder at the top of the checkout that setup.cfg does not ship"
    for gone in ("survival", "voxelmaps"):
        assert not (ROOT / gone).exists()


def test_the_architecture_doc_names_every_layer():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    layers = [m.strip() for line in cfg["importlinter:contract:layers"]["layers"].split("\n") for m in line.split("|")]
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m for m in layers if m and m != "voxsurv.__main__" and f"`{m}`" not in doc]
    assert not missing, f"docs/architecture.md's layers table lacks {missing}"
