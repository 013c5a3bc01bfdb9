"""Issue 13: a newcomer can run every command in the README and the docs as written. This test
reads the commands out of the Markdown (fenced ``bash`` blocks, and inline code that starts with
``voxsurv``/``.venv/bin/voxsurv``) and runs them, so the docs cannot drift from the code.

- Every `voxsurv ...` command RUNS (in this process, in order, per file, in a fresh folder):
  placeholders get small real inputs (``CT.nii.gz``/``GTV.nii.gz`` -> a lung_crops patient,
  ``CT/``/``RS.dcm`` -> the IBSI phantom DICOM, ``cohort.csv``/``M``/... -> a 3-patient
  lung_crops manifest, ``train.csv``/``test.csv`` -> small prediction files), ``[optional]`` parts
  are left out, ``a|b`` takes ``a``.
- Marked TINY (the same command, smaller input; said in ``TINY``): a cohort command over the whole
  lung_crops manifest runs on its first 3 patients; `cv` runs 2 folds of 1 epoch on a 10-patient
  demo cohort; `demo-data` writes 4 + 3 patients.
- The model-zoo checks (`monai.bundle verify_net_in_out`, `ckpt_export`) run as written, the
  export into a temporary file.
- Everything else is listed in ``NOT_RUN`` with the reason (installs, hours of training, other
  environments, Docker) and is only checked to be classified: a new command in the docs that is
  neither run nor listed fails this test.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("bundles/*/docs/README.md")),
        REPO / "deploy" / "README.md"]

NOT_RUN = [
    (r"^bash scripts/setup_env\.sh", "installs the environment (CI runs it before the tests)"),
    (r"^(\.venv/bin/)?python -m pytest|pytest", "the test suite itself"),
    (r"monai\.bundle run --config_file .*(pretrain|finetune)/configs/", "training runs (minutes to hours); the bundles' "
     "tests run them with tiny overrides (tests/test_bundles_*.py)"),
    (r"monai\.bundle run --config_file bundles/inference/configs/inference\.yaml", "the inference bundle as a plain "
     "MONAI bundle: run by tests/test_inference_bundle.py"),
    (r"^torchrun ", "multi-GPU training (needs GPUs)"),
    (r"scripts/run_real_study\.py|voxsurv\.study\.publish|voxsurv\.study\.report", "the real study (hours of CPU) "
     "and publishing its results"),
    (r"voxsurv\.inference\.packaging", "re-packages the shipped bundle in place; tests/test_inference_bundle.py "
     "packages into a temporary copy"),
    (r"^(python3 -m venv|/work/deploy-venv|VOXSURV_DEPLOY_PYTHON=|pip wheel|pip install \"holoscan|echo .*wheels|"
     r"monai-deploy )", "MONAI Deploy: its own environment / Docker (tests/test_deploy_app.py runs the app)"),
    (r"^(python -m venv|\. mlabel|pip |monailabel |mkdir -p apps)", "MONAI Label: another environment (numpy < 2)"),
    (r"^cd dist/|^python -m monai\.bundle run --config_file configs/inference\.yaml", "runs inside an exported "
     "bundle: tests/test_bundle_export.py exports one and runs this command in a fresh venv"),
    (r"^[A-Z_]+=\S", "a shell variable for the commands that follow it"),
    (r"scripts/(bench_|ibsi_maps_table|screen_maps)", "benchmarks (minutes); numbers are quoted in the docs"),
]
TINY = {
    "lung_crops manifest": "preprocess/maps/predict over ../shared/data/lung_crops/manifest.csv run on its first 3 patients",
    "cv": "the first cv command runs --folds 2 with max_epochs=1 on a 10-patient demo cohort (a real run trains 5 "
          "networks); later cv commands are parsed (their options checked), not run again",
    "demo-data": "demo-data writes 4 source + 3 target patients (the default 120 + 80 take minutes)",
}


# ---- reading the docs --------------------------------------------------------------------------
def _code_blocks(text: str) -> list[str]:
    lines, out, inside, lang = text.splitlines(), [], False, ""
    for line in lines:
        if line.strip().startswith("```"):
            if inside:
                inside = False
            else:
                inside, lang = True, line.strip()[3:].strip().lower()
            continue
        if inside and lang in ("bash", "sh", "shell", "console"):
            out.append(line)
    joined, buf = [], ""
    for line in out:
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        joined.append(buf + line)
        buf = ""
    return [" ".join(c.split()) for c in (_strip_comment(j).strip() for j in joined) if c]


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    return re.split(r"\s+#\s", line, maxsplit=1)[0]


def _inline_commands(text: str) -> list[str]:
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    spans += [m.replace("\n", " ") for m in re.findall(r"`((?:\.venv/bin/)?voxsurv [^`]+)`", text.replace("\n", " "))]
    found = []
    for s in spans:
        s = " ".join(s.split())
        # a complete command names its output (or is `manifest check FILE`); `voxsurv predict` alone
        # or `voxsurv evaluate --predictions OUT` are mentions in the text, not commands to run
        complete = " --out " in s or re.match(r"^(\.venv/bin/)?voxsurv manifest check \S", s)
        if re.match(r"^(\.venv/bin/)?voxsurv [a-z]", s) and complete and s not in found:
            found.append(s)
    return found


def doc_commands() -> list[tuple[str, str]]:
    """(file, command) for every command in the docs, in document order."""
    out = []
    for path in DOCS:
        text = path.read_text()
        for cmd in _code_blocks(text) + _inline_commands(text):
            if (path.name, cmd) not in out:
                out.append((str(path.relative_to(REPO)), cmd))
    return out


def _voxsurv_argv(cmd: str) -> list[str] | None:
    """The argument list of a `voxsurv` command (None for other commands)."""
    m = re.match(r"^(?:\.venv/bin/)?(?:voxsurv|python -m voxsurv)\s+(.*)$", cmd)
    if not m:
        return None
    rest = re.sub(r"\[[^\]]*\]", " ", m.group(1))  # optional parts left out
    rest = rest.replace("...", " ")
    argv = shlex.split(rest)
    return [a.split("|")[0] if "|" in a and not a.startswith("http") else a for a in argv]


def test_every_command_in_the_docs_is_run_or_listed_with_a_reason():
    commands = doc_commands()
    assert len(commands) > 30
    unclassified = [(f, c) for f, c in commands if _voxsurv_argv(c) is None and not _zoo_check(c)
                    and not any(re.search(rx, c) for rx, _ in NOT_RUN)]
    assert unclassified == [], unclassified
    readme_start = (REPO / "README.md").read_text().split("## Start here", 1)[1].split("\n## ", 1)[0]
    assert "voxsurv predict" in readme_start  # the README's "Start here" includes predict


# ---- inputs for the placeholders -------------------------------------------------------------
@pytest.fixture(scope="module")
def inputs(lung_crops, ibsi, tmp_path_factory):
    d = tmp_path_factory.mktemp("doc_inputs")
    full = pd.read_csv(lung_crops / "manifest.csv")
    tiny = full[full.patient_id.isin(["radiogenomics-202", "lung1-371", "lung1-246"])].copy()
    for col in ("image", "mask"):
        tiny[col] = [str(lung_crops / p) for p in tiny[col]]
    tiny.to_csv(d / "tiny_manifest.csv", index=False)
    dicom = ibsi / "ct_phantom" / "dicom"
    rtstruct = next((dicom / "mask").glob("*.dcm"))
    pd.DataFrame([{"patient_id": "phantom", "ct_dir": str(dicom / "image"), "rtstruct": str(rtstruct),
                   "roi": "GTV"}]).to_csv(d / "dicom_manifest.csv", index=False)

    def preds(ids, shift):
        n = len(ids)
        return pd.DataFrame({"patient_id": ids, "risk": [((i * 7) % n) / n + shift for i in range(n)],
                             "time_days": [40 * (i + 3) for i in range(n)], "event": [int(i % 3 != 0) for i in range(n)]})

    preds([f"train-{i}" for i in range(40)], 0.0).to_csv(d / "train.csv", index=False)
    preds([f"test-{i}" for i in range(30)], 0.1).to_csv(d / "test.csv", index=False)
    row = full[full.patient_id == "lung1-371"].iloc[0]
    return {"image": str(lung_crops / row["image"]), "mask": str(lung_crops / row["mask"]),
            "manifest": str(d / "tiny_manifest.csv"), "dicom_manifest": str(d / "dicom_manifest.csv"),
            "ct_dir": str(dicom / "image"), "rtstruct": str(rtstruct), "train": str(d / "train.csv"),
            "test": str(d / "test.csv"), "shared": str(lung_crops.parent), "dir": d}


def _fill(argv: list[str], inputs: dict, cwd: Path) -> list[str]:
    """Placeholders -> small real inputs (see the module docstring)."""
    out = []
    command = argv[0] if argv else ""
    for i, a in enumerate(argv):
        a = a.replace("../shared/data", inputs["shared"]).replace("/work/shared/data", inputs["shared"])
        if a.startswith("bundles/"):
            a = str(REPO / a)
        opt = argv[i - 1] if i else ""
        exists = Path(a).exists() or (cwd / a).exists()
        if opt == "--image" and not exists:
            a = inputs["image"]
        elif opt == "--mask" and not exists:
            a = inputs["mask"]
        elif opt == "--ct-dir" and not exists:
            a = inputs["ct_dir"]
        elif opt in ("--rtstruct",) and not exists:
            a = inputs["rtstruct"]
        elif opt == "--manifest" and (not exists or (a.endswith("lung_crops/manifest.csv")
                                                     and command in ("preprocess", "maps", "predict"))):
            a = inputs["dicom_manifest"] if command == "convert" else inputs["manifest"]  # TINY: lung_crops manifest
        elif opt == "--predictions" and not exists:
            a = inputs["test"]
        elif opt == "--reference" and not exists:
            a = inputs["train"]
        elif command == "manifest" and opt == "check" and not exists:
            a = inputs["manifest"]
        out.append(a)
    if command == "cv":  # TINY
        data = cwd / "cv_demo_data"
        if not data.exists():
            from voxsurv.training.demo import generate_demo_cohort

            generate_demo_cohort(data, n_source=10, n_target=3, seed=2)
        out = [a for a in out]
        j = out.index("--folds") if "--folds" in out else None
        if j is not None:
            del out[j:j + 2]
        out += ["--folds", "2", "--set", f"dataset_dir={data}", f"cache_dir={cwd / 'cv_cache'}", "max_epochs=1",
                "embed_dim=32", "depth=2", "img_size=32", "batch_size=8"]
    if command == "demo-data":  # TINY
        out += ["--n-source", "4", "--n-target", "3"]
    return out


_CV_RAN: list = []


def _zoo_check(cmd: str) -> bool:
    return bool(re.match(r"^python -m monai\.bundle (verify_net_in_out|ckpt_export) ", cmd))


@pytest.mark.parametrize("doc", [str(p.relative_to(REPO)) for p in DOCS])
def test_voxsurv_commands_in_the_docs_run_as_written(doc, inputs, tmp_path, monkeypatch, capsys):
    from voxsurv.cli import main

    commands = [c for f, c in doc_commands() if f == doc and _voxsurv_argv(c) is not None]
    if not commands:
        pytest.skip(f"{doc} has no voxsurv command")
    monkeypatch.chdir(tmp_path)  # outputs of one document's commands land together, in order
    for cmd in commands:
        argv = _voxsurv_argv(cmd)
        if argv[0] == "cv" and _CV_RAN:  # TINY: one cv run per session; the others are parsed
            from voxsurv.cli import build_parser

            build_parser().parse_args(argv)
            continue
        argv = _fill(argv, inputs, tmp_path)
        _CV_RAN.extend(["cv"] if argv[0] == "cv" else [])
        try:
            rc = main(argv)
        except SystemExit as exc:  # --help, or argparse refusing the documented options
            rc = exc.code
        captured = capsys.readouterr()
        assert rc == 0, f"{doc}: `{cmd}` -> exit {rc}\n{captured.err[-3000:]}"


def test_model_zoo_checks_in_the_docs_run_as_written(tmp_path):
    checks = [c for _, c in doc_commands() if _zoo_check(c)]
    assert checks, "the inference bundle's README shows verify_net_in_out and ckpt_export"
    for cmd in checks:
        argv = shlex.split(cmd)
        if "--filepath" in argv:
            argv[argv.index("--filepath") + 1] = str(tmp_path / "model.ts")  # not into the shipped bundle
        proc = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True, timeout=900,
                              env={**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, f"`{cmd}`\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
