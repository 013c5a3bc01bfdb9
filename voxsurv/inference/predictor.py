"""Run the inference bundle on new patients: risk score, tier, S(t), Grad-CAM NIfTI on the input
grid, PNG overlay and report.json per patient (the model side; where results go, resume and
cohorts are voxsurv.inference.batch and voxsurv.inference.outputs).

The bundle's config is the single source of the pipeline: the predictor parses its
``preprocessing``, ``network_def`` and ``postprocessing`` (MONAI ConfigParser) and adds only
what a report needs around them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from voxsurv.core.errors import InputError, input_error_in
from voxsurv.core.privacy import redact
from voxsurv.inference.bundle_info import REPORT_TIMES_DAYS, InferenceInfo, sha256_file, sha256_files

logger = logging.getLogger(__name__)

REPORT_FILE, CAM_FILE, OVERLAY_FILE = "report.json", "gradcam.nii.gz", "overlay.png"


def read_prediction_manifest(path: str | Path) -> list[dict]:
    """Rows of a prediction manifest: ``patient_id`` and either ``image, mask`` (NIfTI/NRRD) or
    ``ct_dir, rtstruct`` (+ ``roi`` per row or ``--roi``); paths relative to the CSV become absolute.
    Survival columns are not needed. A missing column is an error for the whole file; problems of
    single rows are left to the run, which records them and goes on."""
    from voxsurv.core.tables import read_csv_table

    path = Path(path)
    table = read_csv_table(path, "manifest", dtype=str, keep_default_na=False, skipinitialspace=True)
    table.columns = [str(c).strip() for c in table.columns]
    has_nifti = {"image", "mask"} <= set(table.columns)
    has_dicom = {"ct_dir", "rtstruct"} <= set(table.columns)
    if "patient_id" not in table.columns or not (has_nifti or has_dicom):
        raise InputError(f"manifest columns {list(table.columns)} lack patient_id and image+mask (or "
                         "ct_dir+rtstruct)", path=str(path),
                         fix="columns: patient_id, image, mask (or patient_id, ct_dir, rtstruct, roi)")
    base = path.resolve().parent
    rows = []
    for rec in table.to_dict("records"):
        row = {k: str(v).strip() for k, v in rec.items()}
        for col in ("image", "mask", "ct_dir", "rtstruct"):
            if row.get(col):
                p = Path(row[col])
                row[col] = str(p if p.is_absolute() else (base / p).resolve())
        rows.append(row)
    return rows


@dataclass
class PreparedPatient:
    """One patient after preprocessing (what a DataLoader worker hands to the main process).

    ``image`` is the network input (C, H, W, S): the S tumour slices of the patient's field of
    view; ``descriptors`` [log_volume_ml, mean_hu]; ``stack`` the geometry of the stack
    (custom_transforms.TumourStack's meta: slice_indices, crop_boxes, fov_mm, tumour_cut_slices,
    tumour_area_mm2, volume_affine, volume_spatial_shape, plus z_mm of each slice) that Grad-CAM
    and the report need."""

    patient_id: str
    image_path: str | None = None
    mask_path: str | None = None
    inputs: dict | None = None
    image: torch.Tensor | None = None
    descriptors: torch.Tensor | None = None
    stack: dict | None = None
    seconds: float = 0.0
    error: dict | None = None

    @property
    def n_slices(self) -> int:
        return 0 if self.image is None else int(self.image.shape[-1])


#: geometry keys kept from the stack's meta (see custom_transforms.tumour_stack.STACK_META_KEYS)
_STACK_KEYS = ("channel_names", "slice_indices", "crop_boxes", "fov_mm", "tumour_cut_slices", "tumour_area_mm2",
               "volume_affine", "volume_spatial_shape")
#: constructor arguments that define a member's architecture (weights must match them)
_ARCHITECTURE_KEYS = ("in_channels", "img_size", "stem_widths", "embed_dim", "depth", "d_state", "d_conv", "expand",
                      "pooling", "attention_dim", "n_descriptors")


def _norm(value):
    """Architecture values compared as JSON would store them (tuples = lists, ints = floats)."""
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _stack_geometry(meta: dict) -> dict:
    """Plain Python geometry of a tumour stack (picklable, JSON-friendly) + each slice's world z."""
    import numpy as np

    out = {}
    for key in _STACK_KEYS:
        v = meta.get(key)
        out[key] = v.tolist() if hasattr(v, "tolist") else v
    affine = np.asarray(out["volume_affine"], dtype=float)
    out["z_mm"] = [float((affine @ np.array([0.0, 0.0, float(k), 1.0]))[2]) for k in out["slice_indices"]]
    return out


class RiskPredictor:
    """The inference bundle, loaded once, applied to patients.

    Args:
        bundle: the bundle folder (``configs/inference.yaml``, ``models/model.pt``,
            ``models/inference_info.json``).
        checkpoint: other weights to run (e.g. ``bundles/pretrain/models/model.pt``, the
            pre-trained ensemble): a single network or an ensemble of any member count. When an
            ``inference_info.json`` packaged for exactly these weights lies beside them, its
            preprocessing and calibration are used; otherwise the bundle's, and the architecture
            must match it; the report then says the tiers and S(t) were fitted for other weights.
        device: torch device for the network.
        roi: ROI name pattern for DICOM inputs without their own.
        info: an InferenceInfo to use instead of the bundle's file (packaging: before the
            calibration exists).
    """

    def __init__(self, bundle: str | Path, checkpoint: str | Path | None = None, device: str = "cpu",
                 roi: str | None = None, info: InferenceInfo | None = None) -> None:
        from monai.bundle import ConfigParser

        self.bundle = Path(bundle).resolve()
        config = self.bundle / "configs" / "inference.yaml"
        if not config.is_file():
            raise InputError("not an inference bundle (configs/inference.yaml missing)", path=str(self.bundle),
                             fix="pass --bundle bundles/inference")
        bundle_weights = self.bundle / "models" / "model.pt"
        weights = Path(checkpoint) if checkpoint else bundle_weights
        self.checkpoint = checkpoint
        if not weights.is_file():
            raise InputError("weights file not found", path=str(weights),
                             fix="package the bundle (python -m voxsurv.inference.packaging) or check --checkpoint")
        self.weights_sha256 = sha256_file(weights)
        if info is None and checkpoint:
            own = weights.parent / "inference_info.json"
            if own.is_file() and own.resolve() != (self.bundle / "models" / "inference_info.json").resolve():
                candidate = InferenceInfo.load(own)
                if candidate.weights_sha256 == self.weights_sha256:
                    info = candidate  # packaged for exactly these weights: its pipeline and calibration
        parser = ConfigParser()
        parser.read_config(str(config))
        meta = self.bundle / "configs" / "metadata.json"
        if meta.is_file():
            parser.read_meta(str(meta))
        parser["bundle_root"] = str(self.bundle)
        parser["device"] = f"$torch.device('{device}')"
        parser["dataset_dir"] = str(self.bundle)  # no datalist needed here
        if info is not None:
            parser["info"] = info
        self.parser = parser
        self.info: InferenceInfo = parser.get_parsed_content("info")
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.device = torch.device(device)
        self.network = parser.get_parsed_content("network_def").to(self.device)
        self._load_weights(weights)
        # postprocessing after the weights: the anchor decomposition calls this very network
        parser["network"] = self.network
        self.postprocessing = parser.get_parsed_content("postprocessing")
        self.weights_path = weights
        self.calibrated = self.weights_sha256 == self.info.weights_sha256
        if not self.calibrated and self.info.weights_sha256:
            logger.warning("weights %s (sha256 %s) are not the ones the bundle's tier cut-offs and Breslow "
                           "baseline were fitted with (%s): tiers and S(t) are reported but do not apply",
                           weights.name, self.weights_sha256[:12], self.info.weights_sha256[:12])
        self.version = str(parser.get("_meta_", {}).get("version", self.info.model_version))
        self.roi = roi
        self.network.eval()

    # ---- weights ----
    def _load_weights(self, path: Path) -> None:
        """Load a single network or an ensemble into ``self.network`` (rebuilt when the member
        count differs); InputError when the architecture is not the bundle's."""
        from networks import SurvivalEnsemble
        from networks.vision_mamba import VisionMambaSurv
        from voxsurv.inference.checkpoint_file import describe_mismatch, read_checkpoint

        state = read_checkpoint(path)  # what is wrong with the FILE (empty, truncated, text, pickled objects)
        members = sorted({int(k.split(".")[1]) for k in state if k.startswith("members.")})
        if not members:  # one network -> a 1-member ensemble (the same risk)
            state, members = {f"members.0.{k}": v for k, v in state.items()}, [0]
        first = {k[len("members.0."):]: v for k, v in state.items() if k.startswith("members.0.")}
        try:
            found = VisionMambaSurv.kwargs_from_state_dict(first)
        except ValueError as exc:
            raise InputError(f"not VisionMambaSurv weights ({str(exc).splitlines()[0]})", path=str(path),
                             fix="use a models/model.pt written by a voxsurv bundle") from None
        found = {"pooling": "mean", "attention_dim": None, "n_descriptors": 0, **found}
        expected = {"pooling": "mean", "attention_dim": None, "n_descriptors": 0, **self.info.network}
        if expected.get("attention_dim") is None and expected["pooling"] == "attention":
            expected["attention_dim"] = expected["embed_dim"]
        differ = {k: (found.get(k), expected.get(k)) for k in _ARCHITECTURE_KEYS
                  if k in found and k in expected and _norm(found[k]) != _norm(expected[k])}
        if differ:
            what = ", ".join(f"{k} {a} (bundle: {b})" for k, (a, b) in differ.items())
            raise InputError(f"weights do not fit the bundle's network: {what}", path=str(path),
                             fix="use weights trained with the bundle's maps and settings (models/inference_info.json)")
        if len(members) != getattr(self.network, "n_members", 1):
            member = self.network.members[0] if hasattr(self.network, "members") else self.network
            self.network = SurvivalEnsemble(member, len(members)).to(self.device)
        try:
            self.network.load_state_dict(state, strict=True)
        except RuntimeError:
            raise InputError(f"weights do not fit the bundle's network: {describe_mismatch(self.network, state)}",
                             path=str(path),
                             fix="use a checkpoint of the same architecture (see models/inference_info.json)") from None

    # ---- step 1: files -> tumour stack (DataLoader workers run this) ----
    def prepare(self, record: dict, work_dir: str | Path | None = None) -> PreparedPatient:
        """Check and preprocess one patient (the bundle's ``preprocessing``: the training chain);
        InputError for bad input (converted to an error record by :meth:`prepare_safely`).
        ``work_dir`` receives the converted NIfTI of DICOM input."""
        from voxsurv.data.ingest.volumes import check_image_mask

        pid = record.get("patient_id") or "anonymous"
        start = time.perf_counter()
        if record.get("inputs") and record.get("image") and record.get("mask"):
            # checked (and DICOM converted) by voxsurv.inference.batch before the bundle loaded
            image_path, mask_path, inputs = record["image"], record["mask"], record["inputs"]
        elif record.get("ct_dir") or record.get("rtstruct"):
            if work_dir is None:
                raise ValueError("DICOM input needs a work_dir for the converted NIfTI")
            image_path, mask_path, inputs = self._convert_dicom(record, pid, Path(work_dir))
        else:
            if not (record.get("image") and record.get("mask")):
                raise InputError("give an image and a mask (or a CT folder + RTSTRUCT)", pid)
            image_path, mask_path = record["image"], record["mask"]
            check_image_mask(image_path, mask_path, pid)
            inputs = {"image": {"file": Path(image_path).name, "sha256": sha256_file(image_path)},
                      "mask": {"file": Path(mask_path).name, "sha256": sha256_file(mask_path)}}
        try:
            sample = self.preprocessing({"image": str(image_path), "mask": str(mask_path), "patient_id": pid})
        except Exception as exc:  # noqa: BLE001 - Compose wraps errors; only InputError is bad input
            err = input_error_in(exc)
            if err is None:
                raise
            raise err.with_patient(pid) from None
        image = sample["image"]
        stack = _stack_geometry(image.meta)
        return PreparedPatient(pid, str(image_path), str(mask_path), inputs,
                               image.as_tensor().float() if hasattr(image, "as_tensor") else torch.as_tensor(image).float(),
                               torch.as_tensor(sample["descriptors"]).float().reshape(-1), stack,
                               time.perf_counter() - start)

    def risk(self, prepared: PreparedPatient) -> float:
        """The network's risk for one prepared patient (what ``monai.bundle run`` gives)."""
        x = prepared.image[None].to(self.device)
        with torch.no_grad():
            return float(self.network(x, prepared.descriptors[None].to(self.device)).reshape(-1)[0])

    def _convert_dicom(self, record: dict, pid: str, work_dir: Path):
        from voxsurv.data.ingest.convert import convert_patient

        ct_dir, rtstruct = record.get("ct_dir"), record.get("rtstruct")
        roi = record.get("roi") or self.roi
        if not (ct_dir and rtstruct and roi):
            raise InputError("DICOM input needs a CT folder, an RTSTRUCT and an ROI name", pid,
                             fix="give --ct-dir, --rtstruct and --roi (or the manifest columns ct_dir, rtstruct, roi)")
        res = convert_patient(ct_dir, rtstruct, roi, work_dir / "input", patient_id=pid)
        files = [p for p in Path(ct_dir).rglob("*") if p.is_file()]
        inputs = {"ct_series": {"files": len(files), "sha256": sha256_files(files)},
                  "rtstruct": {"sha256": sha256_file(rtstruct)}, "roi": res.roi_name,
                  "converted_image_sha256": sha256_file(res.image_path)}
        return str(res.image_path), str(res.mask_path), inputs

    def prepare_safely(self, record: dict, work_dir: str | Path) -> PreparedPatient:
        """:meth:`prepare` that never raises: bad input becomes ``PreparedPatient.error``."""
        pid = record.get("patient_id") or "anonymous"
        try:
            return self.prepare(record, work_dir)
        except InputError as err:
            return PreparedPatient(pid, error={"patient_id": pid, "problem": redact(err.problem),
                                               "path": Path(err.path).name if err.path else "",
                                               "fix": err.fix or "", "message": redact(str(err))})
        except Exception as exc:  # noqa: BLE001 - a batch run records unexpected failures too
            logger.exception("patient %s: unexpected error", pid)
            return PreparedPatient(pid, error={"patient_id": pid, "problem": f"unexpected {type(exc).__name__}",
                                               "path": "", "fix": "report this", "message": redact(str(exc))})

    # ---- step 2: tumour stack -> risk, tier, S(t), Grad-CAM, files ----
    def infer(self, prepared: PreparedPatient, out_dir: str | Path) -> dict:
        """Network + post-processing + Grad-CAM for one prepared patient; writes report.json,
        gradcam.nii.gz and overlay.png into ``out_dir`` and returns the report."""
        import SimpleITK as sitk

        from voxsurv.inference.attention import attention_on_input_grid, risk_and_slice_gradcam
        from voxsurv.inference.overlay import choose_panels, input_slices_at, write_overlay
        from voxsurv.core.jsonfile import write_json_atomic

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        # one pass gives the risk (the same value as a no-grad forward / monai.bundle run) and its Grad-CAM
        pred, cams = risk_and_slice_gradcam(self.network, prepared.image.to(self.device), prepared.descriptors)
        post = self.postprocessing({"pred": pred.cpu(), "descriptors": prepared.descriptors})
        t2 = time.perf_counter()
        ct = sitk.ReadImage(prepared.image_path)
        mask = sitk.ReadImage(prepared.mask_path)
        cam = attention_on_input_grid(cams, prepared.stack, ct)
        sitk.WriteImage(cam, str(out_dir / CAM_FILE), useCompression=True)
        panels = choose_panels(input_slices_at(ct, prepared.stack["z_mm"]))
        surv = post["survival"]
        title = (f"patient {prepared.patient_id}: risk {post['risk']:.4f} ({post['tier']});  "
                 + ",  ".join(f"S({t // 365}y) " + ("n/a" if surv[f's_{t}'] is None else f"{surv[f's_{t}']:.2f}")
                              for t in REPORT_TIMES_DAYS))
        created = datetime.now(timezone.utc)
        footer = f"voxsurv model {self.model_version}  |  {created:%Y-%m-%d %H:%M} UTC"
        shown = write_overlay(out_dir / OVERLAY_FILE, ct, mask, cam, panels, title=title, footer=footer)
        t3 = time.perf_counter()
        report = self._report(prepared, post, shown, {"preprocessing_and_maps": prepared.seconds,
                                                      "network_and_gradcam": t2 - t0,
                                                      "writing_outputs": t3 - t2}, mask=mask, created=created)
        write_json_atomic(out_dir / REPORT_FILE, report)
        logger.info("patient %s: risk %.4f (%s) from %d slices in %.1f s -> %s", prepared.patient_id, post["risk"],
                    post["tier"], prepared.n_slices, report["timing_s"]["total"], out_dir)
        return report

    @property
    def model_version(self) -> str:
        """``<release>+<weights sha256[:12]>`` (voxsurv.inference.report_fields.model_version)."""
        from voxsurv.inference.report_fields import model_version

        return model_version(self.version, self.weights_sha256)

    def _report(self, prepared: PreparedPatient, post: dict, shown: dict, timing: dict, mask=None,
                created=None) -> dict:
        import voxsurv
        from voxsurv.inference import report_fields as rf

        info = self.info
        stack = prepared.stack
        created = created or datetime.now(timezone.utc)
        rng = rf.risk_range(post["risk"], post.get("training_risk_range"), info.provenance.get("training_patients"),
                            post.get("in_training_range"))
        extent = rf.tumour_extent_mm(mask) if mask is not None else {"max_inplane_extent_mm": float("nan")}
        fov = rf.field_of_view(extent, float(stack["fov_mm"]), int(stack["tumour_cut_slices"]), prepared.n_slices)
        surv = post["survival"]
        missing = [k for k, v in surv.items() if v is None]
        timing = {k: round(v, 3) for k, v in timing.items()}
        timing["total"] = round(sum(timing.values()), 3)
        return {
            "patient_id": prepared.patient_id,
            "risk": post["risk"],
            "risk_definition": ("log relative hazard (Cox) of the patient: the network pools its tumour slices "
                                f"({info.network.get('pooling', 'mean')} pooling"
                                + (f", mean of {info.n_members} ensemble members" if info.n_members > 1 else "")
                                + "); higher = shorter expected survival"),
            **({"anchor_offset": post["anchor_offset"], "image_risk": post["image_risk"],
                "anchor_definition": "risk = anchor_offset (fixed Cox predictor on log tumour volume and mean tumour "
                                     "HU, fitted on the training patients) + image_risk (the network's part)"}
               if "anchor_offset" in post else {}),
            "tier": post["tier"],
            "tier_cutoffs": post["tier_cutoffs"],
            "tier_method": info.tier_method,
            "in_training_range": rng["in_training_range"],
            "training_risk_range": rng["training_risk_range"],
            "risk_range": rng,
            "tier_rule": rf.tier_rule(post["tier_cutoffs"], info),
            "tumour_exceeds_field_of_view": fov["tumour_exceeds_field_of_view"],
            "field_of_view": fov,
            "survival": surv,
            "survival_method": "S(t) = exp(-H0(t) exp(risk)), H0 = Breslow baseline of the training cohort "
                               "(step function); t in days",
            "survival_note": (f"{', '.join(missing)}: beyond the training cohort's follow-up "
                              f"({info.baseline['last_follow_up']:g} days), not estimable") if missing else "",
            "calibration_applies": self.calibrated,
            "calibration_note": "" if self.calibrated else
            "tier cut-offs and baseline were fitted for the bundle's weights, not these: shown for reference only",
            "slices": [{"slice_index_resampled": int(k), "z_mm": round(z, 3), "tumour_area_mm2": round(a, 2)}
                       for k, z, a in zip(stack["slice_indices"], stack["z_mm"], stack["tumour_area_mm2"])],
            "n_slices": prepared.n_slices,
            "field_of_view_mm": round(float(stack["fov_mm"]), 2),
            "tumour_cut_slices": int(stack["tumour_cut_slices"]),
            "overlay_input_slices": shown["slices"],
            "overlay": {"slices": shown["slices"], "orientation": shown["orientation"], "footer": shown["footer"]},
            "warnings": [w for w in (rng["note"] if rng["in_training_range"] is False else "", fov["note"]) if w],
            "model": {"version": self.model_version, "bundle_version": self.version, "weights": self.weights_path.name,
                      "weights_sha256": self.weights_sha256, "bundle_weights_sha256": info.weights_sha256,
                      "features": info.features, "provenance": info.provenance},
            "preprocessing": info.preprocessing,
            "inputs": prepared.inputs,
            "outputs": {"gradcam_nifti": CAM_FILE, "overlay_png": OVERLAY_FILE,
                        "gradcam_note": "Grad-CAM of the patient risk on stem.conv2 per tumour slice (summed over "
                                        "ensemble members), positive part, divided by the patient's maximum; pasted "
                                        "back into each slice's field of view and resampled onto the input CT's grid"},
            "timing_s": timing,
            "voxsurv_version": getattr(voxsurv, "__version__", "unknown"),
            "version_scheme": "model.version = <voxsurv release of the bundle>+<first 12 hex digits of the weights' "
                              "sha256>; voxsurv_version = the software that wrote this report",
            "created_utc": created.isoformat(timespec="seconds"),
            "intended_use": "Research use only; not for clinical decisions.",
        }

    # ---- one patient (a cohort: voxsurv.inference.batch.predict_patients) ----
    def predict(self, record: dict, out_dir: str | Path) -> dict:
        """One patient; raises InputError for bad input."""
        prepared = self.prepare(record, out_dir)
        return self.infer(prepared, out_dir)
