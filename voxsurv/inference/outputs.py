"""The folder `voxsurv predict --out OUT` writes, and the rules that keep it trustworthy.

    OUT/voxsurv_predict.json   which model and settings made these results (checked on every run)
    OUT/predictions.csv        one row per predicted patient (all runs into OUT), rewritten
    OUT/exclusions.csv         one row per excluded patient, both atomically after EACH patient
    OUT/<patient folder>/      report.json, gradcam.nii.gz, overlay.png (+ input/ for DICOM)

- Nothing is mixed: each patient has its own folder (``voxsurv.core.patient_folders``: injective,
  readable names), and OUT holds the results of one model only.
- Nothing is lost: a patient's files are written into a hidden staging folder and renamed into
  place when complete; the tables are replaced atomically, so an interrupted run leaves every
  finished patient listed and no half-written folder.
- Nothing is recomputed or replaced silently: a patient whose report carries the same resume
  key (input content + weights + settings) is kept; a different key for an existing patient,
  another model's results or a folder with other content are refused BEFORE any computation,
  unless ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from voxsurv.core.errors import InputError
from voxsurv.core.patient_folders import patient_folder_name
from voxsurv.inference.bundle_info import REPORT_TIMES_DAYS

RUN_FILE = "voxsurv_predict.json"
RUN_FORMAT = "voxsurv-predict-run/1"
PREDICTIONS_FILE, EXCLUSIONS_FILE = "predictions.csv", "exclusions.csv"
#: bump when what a report holds changes: older reports are then recomputed, not resumed
REPORT_FORMAT = 2
SURVIVAL_COLUMNS = tuple(f"s_{days}" for days in REPORT_TIMES_DAYS)
#: the columns of every inference predictions.csv, in this order: the bundle's own `monai.bundle run`
#: writes them (voxsurv.inference.handlers.PredictionsWriter; + ANCHOR_COLUMNS for an anchored
#: network), `voxsurv predict` writes PREDICT_TABLE_COLUMNS (the same + folder, time_days, event)
PREDICTION_COLUMNS = ("patient_id", "risk", "tier", *SURVIVAL_COLUMNS, "in_training_range")
ANCHOR_COLUMNS = ("anchor_offset", "image_risk")
PREDICT_TABLE_COLUMNS = ("patient_id", "folder", *PREDICTION_COLUMNS[1:], "time_days", "event")
EXCLUSION_COLUMNS = ("patient_id", "problem", "path", "fix", "message")
STAGING_PREFIX = ".voxsurv-partial-"


def _sha256_text(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def model_identity(bundle: str | Path, checkpoint: str | Path | None = None) -> dict:
    """What decides whether earlier results came from the same model: the weights' and the bundle
    files' content (no torch needed, so OUT is checked before the bundle loads)."""
    from voxsurv.inference.bundle_info import sha256_file

    bundle = Path(bundle)
    weights = Path(checkpoint) if checkpoint else bundle / "models" / "model.pt"
    parts = {}
    for name, path in (("weights", weights), ("inference_info", bundle / "models" / "inference_info.json"),
                       ("inference_config", bundle / "configs" / "inference.yaml")):
        parts[f"{name}_sha256"] = sha256_file(path) if path.is_file() else None
    version = None
    meta = bundle / "configs" / "metadata.json"
    if meta.is_file():
        try:
            version = json.loads(meta.read_text()).get("version")
        except (json.JSONDecodeError, UnicodeDecodeError):
            version = None
    return {"bundle_version": version, "weights_file": weights.name, **parts}


def model_key(identity: dict) -> str:
    return _sha256_text({k: v for k, v in identity.items() if k.endswith("_sha256")})


def input_fingerprint(record: dict, roi: str | None = None) -> dict:
    """Content hashes of one patient's input files (+ the ROI pattern for DICOM): the input part of
    the resume key. InputError when a file is missing."""
    from voxsurv.inference.bundle_info import sha256_file, sha256_files

    pid = record.get("patient_id") or None
    if record.get("ct_dir") or record.get("rtstruct"):
        ct_dir, rtstruct = Path(record.get("ct_dir") or ""), Path(record.get("rtstruct") or "")
        if not record.get("ct_dir") or not ct_dir.is_dir():
            raise InputError("CT folder not found", pid, str(ct_dir), "check --ct-dir (or the manifest's ct_dir)")
        if not record.get("rtstruct") or not rtstruct.is_file():
            raise InputError("RTSTRUCT file not found", pid, str(rtstruct),
                             "check --rtstruct (or the manifest's rtstruct)")
        files = [p for p in ct_dir.rglob("*") if p.is_file()]
        if not files:
            raise InputError("CT folder is empty", pid, str(ct_dir), "point --ct-dir at the folder of the CT series")
        return {"ct_series": {"files": len(files), "sha256": sha256_files(files)},
                "rtstruct": {"sha256": sha256_file(rtstruct)}, "roi_pattern": record.get("roi") or roi}
    out = {}
    for key in ("image", "mask"):
        value = record.get(key)
        if not value:
            raise InputError(f"no {key} given", pid, fix="give an image and a mask (or a CT folder + RTSTRUCT)")
        path = Path(value)
        if not path.is_file():
            raise InputError(f"{key} file not found", pid, str(path), "check the path (manifest paths are relative "
                                                                     "to the manifest's folder)")
        out[key] = {"file": path.name, "sha256": sha256_file(path)}
    return out


def resume_key(fingerprint: dict, identity: dict, settings: dict) -> str:
    """Input content + weights/bundle hashes + settings + report format, as one hex digest."""
    return _sha256_text({"inputs": fingerprint, "model": model_key(identity), "settings": settings,
                         "report_format": REPORT_FORMAT})


@dataclass
class PlannedPatient:
    """One patient of a run: where it goes and whether it must be computed."""

    record: dict
    patient_id: str
    folder: str
    key: str = ""
    inputs: dict = field(default_factory=dict)
    status: str = "todo"  # todo | done | conflict
    existing: dict | None = None


class PredictionFolder:
    """``--out`` of `voxsurv predict` (see the module docstring).

    Args:
        out: the output folder.
        identity: :func:`model_identity` of the model this run uses.
        overwrite: replace earlier results (another model's, or a patient's from other inputs).
    """

    def __init__(self, out: str | Path, identity: dict, overwrite: bool = False) -> None:
        self.out = Path(out).expanduser()
        self.identity = identity
        self.overwrite = overwrite
        self.created = False
        self.predictions: dict[str, dict] = {}
        self.exclusions: dict[str, dict] = {}
        self._replace_other_model = False

    # ---- before any computation ----
    def check(self) -> None:
        """Refuse an OUT that is a file, is not writable, holds another model's results or other
        content. Creates nothing."""
        from voxsurv.core.output_paths import check_output_folder

        check_output_folder(self.out)
        if not self.out.is_dir():
            return
        entries = [p for p in self.out.iterdir() if not p.name.startswith(STAGING_PREFIX)]
        if not entries:
            return
        run = self.out / RUN_FILE
        if not run.is_file():
            raise InputError("--out is not empty and holds no voxsurv predict results (no " + RUN_FILE + ")",
                             path=str(self.out),
                             fix="choose a new or empty --out folder (files of earlier voxsurv versions: move them away)")
        try:
            previous = json.loads(run.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise InputError(f"{RUN_FILE} is not valid JSON", path=str(run),
                             fix="choose a new --out folder, or remove the damaged file") from None
        if previous.get("format") != RUN_FORMAT:
            raise InputError(f"{RUN_FILE} is of another format ({previous.get('format')!r})", path=str(run),
                             fix="choose a new --out folder")
        if model_key(previous.get("model", {})) != model_key(self.identity):
            if not self.overwrite:
                old, new = previous.get("model", {}), self.identity
                raise InputError(
                    "--out holds the results of another model (weights sha256 "
                    f"{str(old.get('weights_sha256'))[:12]}, bundle {old.get('bundle_version')}; this run: "
                    f"{str(new.get('weights_sha256'))[:12]}, bundle {new.get('bundle_version')})",
                    path=str(self.out),
                    fix="choose another --out for this model, or pass --overwrite to replace all earlier results")
            self._replace_other_model = True
            return
        self._load_tables()

    def _load_tables(self) -> None:
        import pandas as pd

        for name, target in ((PREDICTIONS_FILE, self.predictions), (EXCLUSIONS_FILE, self.exclusions)):
            path = self.out / name
            if path.is_file():
                table = pd.read_csv(path, dtype=str, keep_default_na=False)
                for row in table.to_dict("records"):
                    target[str(row.get("patient_id", ""))] = row

    def plan(self, records: list[dict], settings: dict, roi: str | None = None) -> list[PlannedPatient]:
        """One PlannedPatient per record (bad rows raise InputError: the caller records them):
        ``done`` when OUT holds its report with the same resume key, ``conflict`` when OUT holds
        a report of this patient from other inputs/settings, else ``todo``."""
        planned = []
        for record in records:
            pid = str(record["patient_id"])
            p = PlannedPatient(record, pid, patient_folder_name(pid))
            p.inputs = input_fingerprint(record, roi)
            p.key = resume_key(p.inputs, self.identity, {**settings, "patient_id": pid})
            report = self._report_in(p.folder)
            if report is not None and not self._replace_other_model:
                if str(report.get("patient_id")) != pid:
                    raise InputError(f"folder {p.folder} holds patient {report.get('patient_id')!r}, not {pid!r}",
                                     pid, str(self.out / p.folder), "choose a new --out folder")
                p.existing = report
                p.status = "done" if report.get("resume_key") == p.key else "conflict"
            planned.append(p)
        return planned

    def _report_in(self, folder: str) -> dict | None:
        path = self.out / folder / "report.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return {"patient_id": None}

    @staticmethod
    def refuse_conflicts(planned: list[PlannedPatient], overwrite: bool, out: Path) -> None:
        conflicts = [p for p in planned if p.status == "conflict"]
        if conflicts and not overwrite:
            ids = ", ".join(p.patient_id for p in conflicts[:5]) + (", ..." if len(conflicts) > 5 else "")
            raise InputError(f"{len(conflicts)} patient(s) already have results in --out from other input files or "
                             f"settings ({ids})", path=str(out),
                             fix="if these are other patients, give them their own ids (--patient-id); to "
                                 "replace the earlier results pass --overwrite; or choose another --out")

    # ---- writing ----
    def start(self) -> None:
        """Create OUT (or clear another model's results with --overwrite) and write the run file."""
        self.created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self.remove_staging()
        if self._replace_other_model:
            self._remove_earlier_results()
        from voxsurv import __version__
        from voxsurv.core.jsonfile import write_json_atomic

        write_json_atomic(self.out / RUN_FILE, {
            "format": RUN_FORMAT, "model": self.identity, "voxsurv_version": __version__,
            "updated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    def _remove_earlier_results(self) -> None:
        """--overwrite with another model: remove what earlier runs wrote (patient folders with a
        report.json, the tables), never other files."""
        for child in self.out.iterdir():
            if child.is_dir() and (child / "report.json").is_file():
                shutil.rmtree(child)
        for name in (PREDICTIONS_FILE, EXCLUSIONS_FILE):
            (self.out / name).unlink(missing_ok=True)
        self.predictions.clear()
        self.exclusions.clear()

    def staging(self, planned: PlannedPatient) -> Path:
        """A fresh hidden folder for one patient's files (renamed into place by :meth:`commit`)."""
        path = self.out / f"{STAGING_PREFIX}{planned.folder}"
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def commit(self, planned: PlannedPatient, staging: Path, report: dict) -> None:
        """Move a complete patient folder into place (replacing an earlier one only under
        --overwrite, which the plan checked) and rewrite the tables."""
        final = self.out / planned.folder
        if final.exists():
            old = self.out / f"{STAGING_PREFIX}old-{planned.folder}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)
        self.record_prediction(planned, report)

    def record_prediction(self, planned: PlannedPatient, report: dict) -> None:
        row = prediction_row(report, planned.folder, planned.record,
                             self.predictions.get(planned.patient_id))
        self.predictions[planned.patient_id] = row
        self.exclusions.pop(planned.patient_id, None)
        self.write_tables()

    def record_exclusion(self, row: dict, planned: PlannedPatient | None = None, key: str | None = None) -> None:
        """Record an excluded patient (``key`` defaults to the id; rows that are not a patient, such
        as a duplicate row, get their own key so the patient's own result does not clear them)."""
        pid = str(row.get("patient_id", ""))
        if planned is not None and pid in self.predictions and self.overwrite:
            # --overwrite asked to replace this patient's result; its new input is bad: no stale result
            shutil.rmtree(self.out / planned.folder, ignore_errors=True)
            self.predictions.pop(pid, None)
        self.exclusions[key or pid or f"row-{len(self.exclusions) + 1}"] = {c: row.get(c, "") for c in EXCLUSION_COLUMNS}
        self.write_tables()

    def write_tables(self) -> None:
        import pandas as pd

        from voxsurv.core.tables import write_csv_atomic

        write_csv_atomic(pd.DataFrame(list(self.predictions.values()), columns=list(PREDICT_TABLE_COLUMNS)),
                         self.out / PREDICTIONS_FILE)
        write_csv_atomic(pd.DataFrame(list(self.exclusions.values()), columns=list(EXCLUSION_COLUMNS)),
                         self.out / EXCLUSIONS_FILE)

    def remove_staging(self) -> None:
        """Remove the hidden folders of patients not finished (an error or Ctrl-C interrupted them)."""
        if self.out.is_dir():
            for stale in self.out.glob(STAGING_PREFIX + "*"):
                shutil.rmtree(stale, ignore_errors=True)

    def abandon(self) -> None:
        """Remove OUT again when this run created it and wrote no result (single-patient errors)."""
        self.remove_staging()
        if self.created and not self.predictions and not self.exclusions:
            shutil.rmtree(self.out, ignore_errors=True)


def prediction_row(report: dict, folder: str, record: dict, previous: dict | None = None) -> dict:
    """A predictions.csv row: the report's numbers + the manifest's time_days/event when it has
    them (so `voxsurv evaluate --predictions OUT` works directly)."""
    surv = report.get("survival", {})
    row = {"patient_id": report["patient_id"], "folder": folder, "risk": report["risk"], "tier": report["tier"],
           **{c: surv.get(c) for c in SURVIVAL_COLUMNS},
           "in_training_range": report.get("risk_range", {}).get("in_training_range"),
           "time_days": "", "event": ""}
    for col in ("time_days", "event"):
        value = str(record.get(col, "") or "").strip()
        if value:
            row[col] = value
        elif previous:
            row[col] = previous.get(col, "")
    return row


def exclusion_row(err: InputError, patient_id: str | None = None) -> dict:
    """An exclusions.csv row of a bad-input error (DICOM UIDs redacted; only the file's name)."""
    from voxsurv.core.privacy import redact

    pid = patient_id if patient_id is not None else (err.patient_id or "")
    return {"patient_id": pid, "problem": redact(err.problem), "path": Path(err.path).name if err.path else "",
            "fix": err.fix or "", "message": redact(err.cli_line()[len("error: "):])}
