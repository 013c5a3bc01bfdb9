"""The voxsurv operator of the MONAI Deploy application: CT series + RTSTRUCT (as selected by the SDK's
DICOMSeriesSelectorOperator) -> voxsurv inference bundle -> report.json, Grad-CAM NIfTI, overlay
PNG in the output folder and the text of a DICOM Basic Text SR for DICOMTextSRWriterOperator.

Why not the SDK's MonaiBundleInferenceOperator: it maps one image input to one network input and
one output per call, strips LoadImage (inputs arrive without a channel dim), prefers a possibly
stale models/model.ts, and decodes outputs as images or class probabilities. Here a patient is
two inputs (CT + a contour from an RTSTRUCT), the network takes the tumour stack AND the tumour's
descriptors, its output is one continuous risk, and Grad-CAM needs gradients. voxsurv's
RiskPredictor reads the same bundle config (preprocessing, network_def, postprocessing) and does
exactly that, so this operator wraps it instead.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from monai.deploy.core import Fragment, Operator, OperatorSpec
from monai.deploy.operators.dicom_data_loader_operator import DICOMDataLoaderOperator

logger = logging.getLogger(__name__)


class TolerantDICOMDataLoaderOperator(DICOMDataLoaderOperator):
    """The SDK's DICOM loader, tolerating an EMPTY SeriesNumber (a type-2 attribute: present, may be
    empty). SDK 4.0.0 calls ``int(None)`` on it and silently drops every instance of the series
    (the IBSI CT phantom has one)."""

    def populate_series_attributes(self, series, sop_instance):
        if "SeriesNumber" in sop_instance and sop_instance.SeriesNumber in (None, ""):
            import copy

            sop_instance = copy.deepcopy(sop_instance)
            del sop_instance.SeriesNumber
        super().populate_series_attributes(series, sop_instance)


def _write_series(selected_series_list, folder: Path, what: str) -> int:
    """Write the DICOM instances of the first selected series to ``folder``; returns their count."""
    for study_selected in selected_series_list or []:
        for selected in study_selected.selected_series:
            instances = selected.series.get_sop_instances()
            folder.mkdir(parents=True, exist_ok=True)
            for i, inst in enumerate(instances):
                inst.get_native_sop_instance().save_as(folder / f"{what}_{i:05d}.dcm")
            return len(instances)
    return 0


def sr_text(report: dict) -> str:
    """Plain text of the DICOM Basic Text SR: risk, tier, S(t), model version; no identifiers."""
    surv = report["survival"]
    lines = [
        "voxsurv overall-survival risk (research use only; not for clinical decisions)",
        f"Risk score (log relative hazard of the patient, from {report['n_slices']} tumour slices): {report['risk']:.4f}",
        f"Risk tier: {report['tier']} (cut-offs {report['tier_cutoffs'][0]:.4f} / {report['tier_cutoffs'][1]:.4f}, "
        "tertiles of the training patients)",
    ]
    if "anchor_offset" in report:
        lines.append(f"Of which tumour volume and density (anchor): {report['anchor_offset']:.4f}; "
                     f"image: {report['image_risk']:.4f}")
    lo, hi = report["training_risk_range"]
    if not report["in_training_range"]:
        lines.append(f"Warning: the risk lies outside the training patients' range ({lo:.4f} to {hi:.4f}): "
                     "tier and survival are extrapolated")
    for key, label in (("s_365", "1 year"), ("s_730", "2 years"), ("s_1095", "3 years")):
        v = surv.get(key)
        lines.append(f"Predicted survival at {label}: " + ("not estimable (beyond training follow-up)" if v is None
                                                             else f"{100 * v:.1f}%"))
    lines.append(f"Model version: {report['model']['version']}; ROI: {report['inputs'].get('roi', '')}")
    if not report["calibration_applies"]:
        lines.append("Note: " + report["calibration_note"])
    return "\n".join(lines)


class VoxsurvRiskOperator(Operator):
    """CT series + RTSTRUCT -> voxsurv risk report; emits the SR text on ``text``.

    Args:
        fragment: the application.
        bundle_path: the voxsurv inference bundle folder.
        output_folder: where report.json, gradcam.nii.gz and overlay.png go.
        roi: ROI name pattern (case-insensitive regular expression), e.g. "GTV".
    """

    def __init__(self, fragment: Fragment, *args, bundle_path, output_folder, roi: str = "GTV", **kwargs):
        self.bundle_path = Path(bundle_path)
        self.output_folder = Path(output_folder)
        self.roi = roi
        super().__init__(fragment, *args, **kwargs)

    def setup(self, spec: OperatorSpec):
        spec.input("ct_series")
        spec.input("rt_series")
        spec.output("text")

    def compute(self, op_input, op_output, context):
        from voxsurv.inference.predictor import RiskPredictor
        from voxsurv.core.privacy import RedactingFilter

        for handler in logging.getLogger().handlers:  # keep UIDs out of the logs from here on
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())

        ct_selected = op_input.receive("ct_series")
        rt_selected = op_input.receive("rt_series")
        with tempfile.TemporaryDirectory(prefix="voxsurv-deploy-") as tmp:
            tmp = Path(tmp)
            n_ct = _write_series(ct_selected, tmp / "ct", "ct")
            n_rt = _write_series(rt_selected, tmp / "rt", "rt")
            if not n_ct:
                raise ValueError("no CT series selected in the input DICOM (rule: Modality CT)")
            if not n_rt:
                raise ValueError("no RTSTRUCT in the input DICOM (rule: Modality RTSTRUCT)")
            logger.info("voxsurv: CT series of %d instances, RTSTRUCT, ROI pattern %r", n_ct, self.roi)
            predictor = RiskPredictor(self.bundle_path, roi=self.roi)
            report = predictor.predict({"patient_id": "anonymous", "ct_dir": str(tmp / "ct"),
                                        "rtstruct": str(next((tmp / "rt").glob("*.dcm"))), "roi": self.roi},
                                       self.output_folder)
        # the converted NIfTI inputs are working files; keep the report, the Grad-CAM and the overlay
        for name in ("image.nii.gz", "mask.nii.gz"):
            (self.output_folder / "input" / name).unlink(missing_ok=True)
        if (self.output_folder / "input").is_dir() and not any((self.output_folder / "input").iterdir()):
            (self.output_folder / "input").rmdir()
        (self.output_folder / "report.json").write_text(json.dumps(report, indent=1))
        op_output.emit(sr_text(report), "text")
