"""Issue 14 moved modules (survival -> voxsurv.stats, voxelmaps -> voxsurv.maps, voxsurv.errors ->
voxsurv.core.errors, ...). Old paths in configs and scripts must fail with a message that names the
new path (voxsurv.core.renamed), never silently; no alias module keeps an old name alive; nothing
shipped still names an old path; and the caches' keys do not depend on module paths at all."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from voxsurv.core.renamed import MOVED, new_path, rewrite

ROOT = Path(__file__).resolve().parents[1]
#: drop the editable-install finder of another checkout (it would find the old modules there)
NO_EDITABLE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
               "if not getattr(f, '__module__', '').startswith('__editable__')]; ")


def run_python(code: str, cwd: Path = ROOT, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    path = f"{extra_path}:{ROOT}" if extra_path else str(ROOT)
    return subprocess.run([sys.executable, "-c", NO_EDITABLE + code], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": path, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}, timeout=300)


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_new_path_exists(old):
    """The table points at real modules / names (a later move must update it)."""
    new = MOVED[old]
    try:
        importlib.import_module(new)
        return
    except ModuleNotFoundError:
        module, _, name = new.rpartition(".")
    assert hasattr(importlib.import_module(module), name), f"{old} -> {new}: no such module or name"


@pytest.mark.parametrize("old", sorted(MOVED))
def test_no_alias_keeps_an_old_path_alive(old):
    parts = old.split(".")
    for n in range(len(parts), 0, -1):  # the old module (or the module that held the old name) is gone
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file() or base.is_dir():
            rest = parts[n:]
            assert rest, f"{old} still exists at {base}"
            module = importlib.import_module(".".join(parts[:n]))
            assert not hasattr(module, rest[0]), f"{old} still importable"
            return


OLD_IMPORTS = {
    "import survival": "voxsurv.stats",
    "from survival.metrics import harrell_c": "voxsurv.stats",
    "import voxelmaps.cohort": "voxsurv.maps",
    "from voxsurv.errors import InputError": "voxsurv.core.errors",
    "from voxsurv.manifest import load_manifest": "voxsurv.data.manifest",
    "import voxsurv.training.paths": "voxsurv.core.bundle_paths",
    "import voxsurv.training.runner": "ensure_demo_cohort -> voxsurv.training.demo",
    "import voxsurv.training; voxsurv.training.runner": "bundle_root, repo_root -> voxsurv.core.bundle_paths",
}


def test_an_old_import_names_the_new_path():
    code = "import voxsurv\n" + "\n".join(
        f"try:\n    exec({stmt!r})\n    print('IMPORTED', {stmt!r})\nexcept (ImportError, AttributeError) as e:\n"
        f"    print(type(e).__name__, e)" for stmt in OLD_IMPORTS)
    out = run_python(code)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and len(lines) == len(OLD_IMPORTS), out.stdout + out.stderr
    for line, expected in zip(lines, OLD_IMPORTS.values()):
        assert line.split()[0] in ("ModuleNotFoundError", "AttributeError"), line
        assert expected in line and "docs/architecture.md" in line, line


def test_the_finder_changes_no_import_that_works(tmp_path):
    """Another distribution's `survival` wins (the finder is asked last); unknown names keep
    Python's own message."""
    (tmp_path / "survival.py").write_text("WHO = 'someone else'\n")
    out = run_python("import voxsurv, survival; print(survival.WHO)\n"
                     "try:\n    import surely_not_a_module\nexcept ModuleNotFoundError as e:\n    print(e, e.name)",
                     cwd=tmp_path, extra_path=tmp_path)
    assert out.stdout.splitlines() == ["someone else", "No module named 'surely_not_a_module' surely_not_a_module"], \
        out.stdout + out.stderr


def test_an_old_bundle_config_fails_with_the_new_path(tmp_path):
    """What a run's config_resolved.json from before issue 14 holds: MONAI resolves `_target_` with
    pydoc.locate and `$import` with optional_import; both would hide a plain ModuleNotFoundError."""
    old = {"imports": ["$import voxsurv", "$import voxsurv.training.runner"],
           "bundle_root": "$voxsurv.training.runner.bundle_root('pretrain')",
           "metric": {"_target_": "survival.handlers.ConcordanceIndex"}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    code = ("from monai.bundle import ConfigParser\n"
            f"p = ConfigParser(); p.read_config({str(tmp_path / 'old.json')!r})\n"
            "for key in ('bundle_root', 'metric'):\n"
            "    try:\n        p.get_parsed_content(key)\n        print('RESOLVED', key)\n"
            "    except Exception as e:\n"
            "        msgs = [str(e)]\n"
            "        while e.__cause__ is not None:\n            e = e.__cause__; msgs.append(str(e))\n"
            "        print(key, ' | '.join(msgs).replace(chr(10), ' '))")
    out = run_python(code)
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout + out.stderr
    assert lines[0].startswith("bundle_root") and "voxsurv.core.bundle_paths" in lines[0], lines[0]
    assert lines[1].startswith("metric") and "survival moved to voxsurv.stats" in lines[1], lines[1]
    # ... and the rewrite makes it work
    text, found = rewrite((tmp_path / "old.json").read_text())
    assert ("survival.handlers", "voxsurv.training.concordance") in found
    new = json.loads(text)
    assert new["imports"][1] == "$import voxsurv.core.bundle_paths"
    assert new["bundle_root"] == "$voxsurv.core.bundle_paths.bundle_root('pretrain')"
    assert new["metric"]["_target_"] == "voxsurv.training.concordance.ConcordanceIndex"


def test_rewrite_touches_module_paths_only():
    text = ("survival analysis of survival times\n_target_: survival.cox_loss.CoxPartialLikelihoodLoss\n"
            "from survival.risk_groups import risk_tier\nx = survival.risk_groups.risk_tier(r, c)\n"
            "maps: voxelmaps torch backend\nimport voxelmaps\nvoxsurv.training.runner.say('hi')\n"
            "my_survival.metrics stays; voxsurv.errors_extra stays\n")
    new, found = rewrite(text)
    assert new.splitlines() == [
        "survival analysis of survival times", "_target_: voxsurv.stats.cox_loss.CoxPartialLikelihoodLoss",
        "from voxsurv.stats.risk_groups import risk_tier", "x = voxsurv.stats.risk_groups.high_risk_group(r, c)",
        "maps: voxelmaps torch backend", "import voxelmaps", "voxsurv.training.distributed.say('hi')",
        "my_survival.metrics stays; voxsurv.errors_extra stays"]
    assert len(found) == 4
    assert new_path("voxelmaps.torch_engine.glcm") == "voxsurv.maps.torch_engine.glcm"
    assert new_path("voxsurv.inference.predictor") is None


#: generated by the study (the lead republishes them) or the table of moves itself
NOT_SCANNED = {"docs/results", "docs/architecture.md", "voxsurv/core/renamed.py", "tests/test_moved_paths.py"}


def test_nothing_shipped_names_an_old_path():
    """Configs, code, docs and tests use the new paths (rewrite() finds nothing to change)."""
    stale = {}
    for top in ("voxsurv", "custom_transforms", "networks", "bundles", "apps", "deploy", "scripts", "docs", "tests",
                "README.md"):
        base = ROOT / top
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file() and p.suffix in (
            ".py", ".yaml", ".yml", ".json", ".md", ".cfg", ".toml", ".sh")]
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            if any(rel == s or rel.startswith(s + "/") for s in NOT_SCANNED) or "/outputs/" in rel or "/." in rel:
                continue
            _, found = rewrite(path.read_text(encoding="utf-8", errors="replace"))
            if found:
                stale[rel] = sorted({old for old, _ in found})
    assert not stale, stale


def test_cache_keys_do_not_hash_module_paths():
    """The stack cache describes a transform by class name + settings: the same transform under
    another module path (a later move) keeps its cached stacks."""
    from monai.transforms import ScaleIntensityRanged

    from voxsurv.training.stack_cache import describe_transform, settings_hash

    t = ScaleIntensityRanged(keys="image", a_min=-1000, a_max=400, b_min=0, b_max=1, clip=True)
    moved = type("ScaleIntensityRanged", (ScaleIntensityRanged,), {"__module__": "somewhere.else"})
    t2 = moved(keys="image", a_min=-1000, a_max=400, b_min=0, b_max=1, clip=True)
    assert settings_hash(describe_transform(t)) == settings_hash(describe_transform(t2))
    t3 = ScaleIntensityRanged(keys="image", a_min=-1000, a_max=300, b_min=0, b_max=1, clip=True)
    assert settings_hash(describe_transform(t)) != settings_hash(describe_transform(t3))


def test_the_architecture_doc_lists_every_move():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [old for old in MOVED if f"`{old}`" not in doc and f"`{old.rpartition('.')[2]}`" not in doc]
    assert not missing, f"docs/architecture.md, 'Moved in issue 14', lacks {missing}"


def test_upgrade_paths_lists_then_rewrites_an_old_config(tmp_path):
    old = tmp_path / "config_resolved.json"
    old.write_text('{"loss": {"_target_": "survival.cox_loss.CoxPartialLikelihoodLoss"}}\n')
    listed = run_python("from voxsurv.core.upgrade_paths import main; main([%r])" % str(old))
    assert "survival.cox_loss -> voxsurv.stats.cox_loss (1x)" in listed.stdout, listed.stdout + listed.stderr
    assert "survival.cox_loss" in old.read_text()  # listing changes nothing
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "voxsurv.core.upgrade_paths", "--write",
                          str(old)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and "1 of 1 file(s) rewritten" in out.stdout, out.stdout + out.stderr
    assert json.loads(old.read_text()) == {"loss": {"_target_": "voxsurv.stats.cox_loss.CoxPartialLikelihoodLoss"}}
