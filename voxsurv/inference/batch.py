"""`voxsurv predict` for one patient or a cohort, in the order that keeps it fast and safe:

1. check ``--out`` (a file? writable? another model's results?) and plan the run: which
   patients OUT already holds with the same input + weights + settings (kept, not recomputed),
   which it holds from other inputs (refused without ``--overwrite``);
2. check every input (files, grids, empty masks; DICOM converted) and record exclusions;
3. only then load the bundle (once per process) and compute, one patient at a time, each
   patient's folder renamed into place and the tables rewritten atomically when it is complete.

The model side (preprocessing, network, Grad-CAM, report) is ``RiskPredictor``'s.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

from voxsurv.core.errors import InputError
from voxsurv.inference.outputs import PlannedPatient, PredictionFolder, exclusion_row, model_identity

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did: patient ids computed, kept from earlier runs, excluded (with rows)."""

    out: Path
    computed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    reports: dict = field(default_factory=dict)


@functools.lru_cache(maxsize=4)
def load_predictor(bundle: str, checkpoint: str | None = None, device: str = "cpu", roi: str | None = None):
    """The bundle, parsed and its weights loaded ONCE per process for the same arguments."""
    from voxsurv.inference.predictor import RiskPredictor

    return RiskPredictor(bundle, checkpoint=checkpoint, device=device, roi=roi)


def read_records(manifest: str | Path) -> list[dict]:
    """Rows of a prediction manifest (see ``predictor.read_prediction_manifest``)."""
    from voxsurv.inference.predictor import read_prediction_manifest

    return read_prediction_manifest(manifest)


def check_bundle(bundle: Path, checkpoint: str | Path | None = None) -> None:
    """The bundle's files, before any patient is read: a config, readable inference_info.json of
    the current format, a weights file (no torch import: milliseconds)."""
    from voxsurv.inference.bundle_info import INFO_FILE, InferenceInfo

    if not (bundle / "configs" / "inference.yaml").is_file():
        raise InputError("not an inference bundle (configs/inference.yaml missing)", path=str(bundle),
                         fix="pass --bundle bundles/inference")
    weights = Path(checkpoint) if checkpoint else bundle / "models" / "model.pt"
    if not (checkpoint and (weights.parent / INFO_FILE).is_file()):  # else the checkpoint's own info is used
        InferenceInfo.load(bundle / "models" / INFO_FILE)
    if not weights.is_file():
        raise InputError("weights file not found", path=str(weights),
                         fix="check --checkpoint, or package the bundle (python -m voxsurv.inference.packaging)")


def check_patient(record: dict, work_dir: Path, roi: str | None) -> dict:
    """Check one patient's input before any model loads; returns the record the predictor takes
    (NIfTI paths + ``inputs`` fingerprint). DICOM is converted into ``work_dir/input``."""
    pid = record["patient_id"]
    if record.get("ct_dir") or record.get("rtstruct"):
        from voxsurv.data.ingest.convert import convert_patient
        from voxsurv.inference.bundle_info import sha256_file

        pattern = record.get("roi") or roi
        if not (record.get("ct_dir") and record.get("rtstruct") and pattern):
            raise InputError("DICOM input needs a CT folder, an RTSTRUCT and an ROI name", pid,
                             fix="give --ct-dir, --rtstruct and --roi (or the manifest columns ct_dir, rtstruct, roi)")
        res = convert_patient(record["ct_dir"], record["rtstruct"], pattern, work_dir / "input", patient_id=pid)
        inputs = {**record["_fingerprint"], "roi": res.roi_name,
                  "converted_image_sha256": sha256_file(res.image_path)}
        return {"patient_id": pid, "image": str(res.image_path), "mask": str(res.mask_path), "inputs": inputs}
    from voxsurv.data.ingest.volumes import check_image_mask

    check_image_mask(record["image"], record["mask"], pid)
    return {"patient_id": pid, "image": record["image"], "mask": record["mask"], "inputs": record["_fingerprint"]}


def predict_patients(records: list[dict], out: str | Path, bundle: str | Path, checkpoint: str | Path | None = None,
                     device: str = "cpu", roi: str | None = None, overwrite: bool = False, workers: int = 0,
                     single: bool = False, predictor=None, owns_process: bool = False) -> RunSummary:
    """Predict ``records`` (dicts: patient_id + image/mask or ct_dir/rtstruct[/roi], time_days/event
    optional) into ``out``. ``single``: one patient from the command line, whose bad input raises
    InputError (and leaves nothing behind) instead of becoming an exclusion. ``owns_process``: the
    process ends after this run (the command line), so MONAI may be imported without the packages
    prediction never uses (voxsurv.inference.monai_import: a faster cold start)."""
    from voxsurv.core.console import Steps, progress_bar

    bundle = Path(bundle)
    check_bundle(bundle, checkpoint)
    identity = model_identity(bundle, checkpoint)
    folder = PredictionFolder(out, identity, overwrite)
    folder.check()
    summary = RunSummary(folder.out)
    settings = {"roi": roi}

    # ---- plan: ids, duplicates, fingerprints, resume ----
    planned: list[PlannedPatient] = []
    early: list[tuple[dict, str]] = []  # (exclusion row, its key in exclusions.csv)
    seen = set()
    for i, rec in enumerate(records, start=1):
        pid = str(rec.get("patient_id") or "").strip()
        if not pid:
            early.append((exclusion_row(InputError(f"row {i}: patient_id is empty", fix="fill patient_id"), ""),
                          f"#row{i}"))
            continue
        if pid in seen:
            early.append((exclusion_row(InputError(f"duplicate patient_id (row {i} is skipped)", pid,
                                                   fix="make patient ids unique"), pid), f"{pid}#row{i}"))
            continue
        seen.add(pid)
        rec = {**rec, "patient_id": pid}
        try:
            p = folder.plan([rec], settings, roi)[0]
        except InputError as err:
            if single:
                raise
            early.append((exclusion_row(err.with_patient(pid), pid), pid))
            continue
        p.record["_fingerprint"] = p.inputs
        planned.append(p)
    PredictionFolder.refuse_conflicts(planned, overwrite, folder.out)

    steps = Steps(4, planned[0].patient_id) if single and planned else None
    todo = [p for p in planned if p.status != "done"]
    if single and not todo and not planned:
        raise early[0][0] if early else InputError("nothing to predict")

    folder.start()
    try:
        for p in planned:
            if p.status == "done":
                folder.record_prediction(p, p.existing)
                summary.kept.append(p.patient_id)
                summary.reports[p.patient_id] = p.existing
        for row, key in early:
            folder.record_exclusion(row, key=key)
            summary.excluded.append(row)

        # ---- inputs checked before the bundle loads ----
        checked: list[tuple[PlannedPatient, dict, Path]] = []
        bar = progress_bar(total=len(todo), desc="checking inputs", unit="patient") if not single else None
        for p in todo:
            stage = folder.staging(p)
            try:
                if steps:
                    with steps.step("checking the input" + (" and converting DICOM" if p.record.get("ct_dir") else "")):
                        rec = check_patient(p.record, stage, roi)
                else:
                    rec = check_patient(p.record, stage, roi)
                checked.append((p, rec, stage))
            except InputError as err:
                if single:
                    raise
                row = exclusion_row(err.with_patient(p.patient_id), p.patient_id)
                folder.record_exclusion(row, p)
                summary.excluded.append(row)
            if bar:
                bar.update(1)
        if bar:
            bar.close()
        if not checked:
            return summary

        # ---- the model: loaded once, then one patient at a time ----
        if predictor is None:
            if steps:
                with steps.step("loading the model"):
                    predictor = _load(bundle, checkpoint, device, roi, owns_process)
            else:
                predictor = _load(bundle, checkpoint, device, roi, owns_process)
        _run_model(predictor, checked, folder, summary, single, workers, steps)
    except BaseException:
        if single:
            folder.abandon()
        raise
    finally:
        folder.remove_staging()  # an interrupted patient leaves no half-written folder
    return summary


def _load(bundle, checkpoint, device, roi, owns_process: bool):
    if owns_process:
        from voxsurv.inference.monai_import import import_monai_for_prediction

        skipped = import_monai_for_prediction()
        if skipped:
            logger.info("MONAI imported without %s (not used by prediction)", ", ".join(skipped))
    return load_predictor(str(bundle), str(checkpoint) if checkpoint else None, device, roi)


def _run_model(predictor, checked, folder, summary, single, workers, steps) -> None:
    from voxsurv.core.console import progress_bar

    if single:
        p, rec, stage = checked[0]
        with steps.step(f"computing maps and slices ({len(predictor.info.features)} radiomics maps)"):
            prepared = predictor.prepare(rec, stage)
        with steps.step("network, Grad-CAM and report"):
            report = _finish(predictor, prepared, p, stage, folder)
        summary.computed.append(p.patient_id)
        summary.reports[p.patient_id] = report
        return

    from torch.utils.data import DataLoader

    dataset = _PreparingDataset(predictor, [(rec, stage) for _, rec, stage in checked])
    n_workers = max(0, min(int(workers), len(checked)))
    loader = DataLoader(dataset, batch_size=1, num_workers=n_workers, collate_fn=_first,
                        worker_init_fn=_one_thread if n_workers else None)
    logger.info("predicting %d patient(s) (%d preprocessing worker(s))", len(checked), n_workers)
    bar = progress_bar(total=len(checked), desc="predict", unit="patient")
    for (p, _, stage), prepared in zip(checked, loader):
        bar.set_postfix_str(p.patient_id)
        if prepared.error is None:
            try:
                report = _finish(predictor, prepared, p, stage, folder)
                summary.computed.append(p.patient_id)
                summary.reports[p.patient_id] = report
            except InputError as err:
                prepared.error = exclusion_row(err.with_patient(p.patient_id), p.patient_id)
        if prepared.error is not None:
            folder.record_exclusion(prepared.error, p)
            summary.excluded.append(prepared.error)
        bar.update(1)
    bar.close()


def _finish(predictor, prepared, planned: PlannedPatient, stage: Path, folder: PredictionFolder) -> dict:
    """Network + report into the staging folder, the resume key added, then renamed into place."""
    from voxsurv.inference.predictor import REPORT_FILE
    from voxsurv.core.jsonfile import write_json_atomic

    report = predictor.infer(prepared, stage)
    report["resume_key"] = planned.key
    report["folder"] = planned.folder
    write_json_atomic(stage / REPORT_FILE, report)
    folder.commit(planned, stage, report)
    return report


class _PreparingDataset:
    """Preprocessing as a map-style dataset, so DataLoader workers compute maps for the next
    patients while the main process runs the network on the current one."""

    def __init__(self, predictor, items: list[tuple[dict, Path]]) -> None:
        self.predictor, self.items = predictor, items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from voxsurv.core.errors import input_error_in
        from voxsurv.inference.predictor import PreparedPatient

        rec, stage = self.items[i]
        pid = rec["patient_id"]
        try:
            return self.predictor.prepare(rec, stage)
        except Exception as exc:  # noqa: BLE001 - bad input is recorded; a bug too, so the cohort goes on
            err = input_error_in(exc)
            if err is None:
                logger.exception("patient %s: unexpected error while preprocessing", pid)
                err = InputError(f"unexpected {type(exc).__name__} while preprocessing: {exc}", pid,
                                 fix="report this (a bug in voxsurv); the other patients were predicted")
            return PreparedPatient(pid, error=exclusion_row(err.with_patient(pid), pid))


def _first(batch):
    return batch[0]


def _one_thread(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)
