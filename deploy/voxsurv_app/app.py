"""voxsurv MONAI Deploy application: DICOM CT series + RTSTRUCT in -> overall-survival risk out as a
DICOM Basic Text SR (risk, tier, S(t)), report.json, Grad-CAM NIfTI and overlay PNG.

    python deploy/voxsurv_app -i DICOM_FOLDER -o OUTPUT_FOLDER -m bundles/inference [--roi GTV]

Graph: DICOMDataLoaderOperator (tolerant subclass) -> DICOMSeriesSelectorOperator (CT) ----+-> VoxsurvRiskOperator
                                 -> DICOMSeriesSelectorOperator (RTSTRUCT) -+        |
       DICOMTextSRWriterOperator <- (text) ----------------------------------------+
       (its DICOM attributes copied from the selected CT series)
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from monai.deploy.conditions import CountCondition
from monai.deploy.core import AppContext, Application
from monai.deploy.operators.dicom_series_selector_operator import DICOMSeriesSelectorOperator
from monai.deploy.operators.dicom_text_sr_writer_operator import DICOMTextSRWriterOperator
from monai.deploy.operators.dicom_utils import EquipmentInfo, ModelInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from operators import TolerantDICOMDataLoaderOperator, VoxsurvRiskOperator  # noqa: E402

CT_RULES = '{"selections": [{"name": "CT Series", "conditions": {"Modality": "(?i)^CT$"}}]}'
RTSTRUCT_RULES = '{"selections": [{"name": "RTSTRUCT", "conditions": {"Modality": "(?i)^RTSTRUCT$"}}]}'


def redact_uids_in_logs() -> None:
    """The SDK logs study/series/SOP instance UIDs; voxsurv keeps UIDs out of logs."""
    from voxsurv.core.privacy import RedactingFilter

    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(RedactingFilter())
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def find_bundle(path: Path) -> Path:
    """The bundle folder: ``path`` itself, or its single sub-folder holding configs/inference.yaml
    (a MAP copies ``--models DIR`` to /opt/holoscan/models/<name>/)."""
    if (path / "configs" / "inference.yaml").is_file():
        return path
    found = sorted(p.parent.parent for p in path.glob("*/configs/inference.yaml"))
    if len(found) == 1:
        return found[0]
    raise FileNotFoundError(f"no voxsurv inference bundle (configs/inference.yaml) in {path}")


class VoxsurvRiskApp(Application):
    """CT + RTSTRUCT -> voxsurv risk report (DICOM SR + JSON + PNG + NIfTI). The ROI pattern comes
    from the VOXSURV_ROI environment variable (default "GTV")."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)  # the SDK sets up logging here
        redact_uids_in_logs()

    def compose(self):
        redact_uids_in_logs()  # again: run() may have reconfigured logging
        app_context: AppContext = Application.init_app_context(self.argv)
        input_path, output_path = Path(app_context.input_path), Path(app_context.output_path)
        bundle = find_bundle(Path(app_context.model_path or os.environ.get("VOXSURV_BUNDLE", "bundles/inference")))
        roi = os.environ.get("VOXSURV_ROI", "GTV")
        loader = TolerantDICOMDataLoaderOperator(self, CountCondition(self, 1), input_folder=input_path, name="study_loader_op")
        ct_selector = DICOMSeriesSelectorOperator(self, rules=CT_RULES, name="ct_selector_op")
        rt_selector = DICOMSeriesSelectorOperator(self, rules=RTSTRUCT_RULES, name="rtstruct_selector_op")
        risk = VoxsurvRiskOperator(self, bundle_path=bundle, output_folder=output_path, roi=roi, name="voxsurv_risk_op")
        import json

        version = json.loads((bundle / "configs" / "metadata.json").read_text()).get("version", "")
        sr_writer = DICOMTextSRWriterOperator(
            self, copy_tags=True, output_folder=output_path,
            model_info=ModelInfo("voxsurv contributors", "voxsurv overall-survival risk", version, ""),
            equipment_info=EquipmentInfo(manufacturer="voxsurv", manufacturer_model="voxsurv", software_version_number=version),
            custom_tags={"SeriesDescription": "voxsurv survival risk (research only, not for clinical use)"},
            name="sr_writer_op")
        self.add_flow(loader, ct_selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(loader, rt_selector, {("dicom_study_list", "dicom_study_list")})
        self.add_flow(ct_selector, risk, {("study_selected_series_list", "ct_series")})
        self.add_flow(rt_selector, risk, {("study_selected_series_list", "rt_series")})
        self.add_flow(risk, sr_writer, {("text", "text")})
        self.add_flow(ct_selector, sr_writer, {("study_selected_series_list", "study_selected_series_list")})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    VoxsurvRiskApp().run()
