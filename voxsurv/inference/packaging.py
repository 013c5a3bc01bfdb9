"""Package a trained finetune output into the inference bundle: the weights as ``models/model.pt``
and ``models/inference_info.json`` with the map statistics, network size, preprocessing settings,
Breslow baseline and tier cut-offs of the training (fine-tune) cohort.

    python -m voxsurv.inference.packaging --finetune-output bundles/finetune/outputs \
        --bundle bundles/inference [--torchscript]

Which weights: ``models/model_last.pt`` (the final fine-tuned state: the one the finetune bundle
tests and its evaluate.yaml loads). Which risks: ``predictions_finetune.csv``, written by the
finetune bundle's last validation pass over the fine-tune split with that same final state.
A stale ``models/model.ts`` is deleted (MONAI Deploy would prefer it over model.pt); with
``--torchscript`` a fresh one is exported from the new weights.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from voxsurv.errors import InputError
from voxsurv.inference.bundle_info import INFO_FILE, InferenceInfo, risk_range, sha256_file, tertile_cutoffs

logger = logging.getLogger(__name__)

DEFAULT_PREPROCESSING = {"pixdim": [1.0, 1.0, 5.0], "roi_size_mm": 64.0, "min_area_mm2": 10.0,
                         "hu_window": {"width": 250.0, "level": 30.0}, "ct_zscore_region": "mask",
                         "maps_backend": "torch"}


def finetune_preprocessing(config_file: str | Path | None = None) -> dict:
    """pixdim, roi_size_mm and min_area_mm2 as the finetune bundle's train.yaml sets them (the
    inference bundle must cut slices exactly as training did)."""
    from monai.bundle import ConfigParser

    from voxsurv.training.runner import bundle_root

    path = Path(config_file) if config_file else Path(bundle_root("finetune")) / "configs" / "train.yaml"
    if not path.is_file():
        return {}
    parser = ConfigParser()
    parser.read_config(str(path))
    out = {}
    for key in ("pixdim", "roi_size_mm", "min_area_mm2"):
        value = parser.get(key)
        if isinstance(value, (int, float, list)):
            out[key] = [float(v) for v in value] if isinstance(value, list) else float(value)
    return out


def network_size(state: dict) -> dict:
    """VisionMambaSurv keyword arguments (except in_channels) read off a state dict, so the bundle
    rebuilds exactly the trained architecture."""
    try:
        embed = int(state["stem.patch_embed.weight"].shape[0])
        tokens = int(state["tokens.pos_embed"].shape[1]) - 1
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        a_log = state["blocks.0.mixer.forward_branch.A_log"]
        return {"img_size": int(round(math.sqrt(tokens))) * 8, "embed_dim": embed, "depth": depth,
                "stem_widths": [int(state["stem.conv1.conv.weight"].shape[0]),
                                int(state["stem.conv2.conv.weight"].shape[0])],
                "d_state": int(a_log.shape[1]),
                "d_conv": int(state["blocks.0.mixer.forward_branch.conv1d.weight"].shape[-1]),
                "expand": int(a_log.shape[0]) // embed}
    except KeyError as exc:
        raise InputError(f"not a VisionMambaSurv state dict (no {exc})",
                         fix="package a checkpoint written by the finetune bundle") from exc


def _model_state(path: Path) -> dict:
    if not path.is_file():
        raise InputError("checkpoint not found", path=str(path), fix="run the finetune bundle first")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    return state


def package(finetune_output: str | Path, bundle: str | Path, checkpoint: str | Path | None = None,
            predictions: str | Path | None = None, map_statistics: str | Path | None = None,
            preprocessing: dict | None = None, version: str | None = None, torchscript: bool = False,
            finetune_config: str | Path | None = None, manifest: str | Path | None = None) -> Path:
    """Copy a finetune output's final weights + statistics into ``bundle/models``; returns the info path.

    Args:
        finetune_output: the finetune bundle's ``output_dir``.
        bundle: the inference bundle folder.
        checkpoint, predictions, map_statistics: override the files inside ``finetune_output``
            (``models/model_last.pt``, ``predictions_finetune.csv``, ``map_statistics.json``).
        preprocessing: overrides (must match the finetune run); by default pixdim, roi_size_mm and
            min_area_mm2 come from ``finetune_config`` (bundles/finetune/configs/train.yaml).
        version: bundle version recorded (default: metadata.json's).
        torchscript: also export ``models/model.ts`` (traced; see docs/README.md).
        manifest: the cohort manifest of the finetune run (patient_id, image, mask, ...). When given,
            the training patients' risks are RECOMPUTED with the packaged weights through this
            bundle's own pipeline and the baseline and cut-offs are fitted on those (the finetune
            run's prediction files need not come from the saved state); otherwise the risks in
            ``predictions`` are used as they are.
    """
    import json

    import pandas as pd

    from survival.calibration import breslow_baseline
    from voxelmaps.normalise import MapStatistics

    src = Path(finetune_output)
    bundle = Path(bundle)
    ckpt = Path(checkpoint) if checkpoint else src / "models" / "model_last.pt"
    pred_file = Path(predictions) if predictions else src / "predictions_finetune.csv"
    stats_file = Path(map_statistics) if map_statistics else src / "map_statistics.json"
    state = _model_state(ckpt)
    stats = MapStatistics.load(stats_file)
    in_channels = int(state["stem.conv1.conv.weight"].shape[1])
    if in_channels != 1 + len(stats.names):
        raise InputError(f"the network takes {in_channels} channels but the map statistics name "
                         f"{len(stats.names)} maps (+ CT)", path=str(stats_file),
                         fix="package the statistics of the same finetune run")
    if not pred_file.is_file():
        raise InputError("training-cohort predictions not found", path=str(pred_file),
                         fix="run the finetune bundle to the end (it writes predictions_finetune.csv)")
    pred = pd.read_csv(pred_file)
    need = {"risk", "time_days", "event"}
    if not need <= set(pred.columns):
        raise InputError(f"predictions lack columns {sorted(need - set(pred.columns))}", path=str(pred_file))
    baseline = breslow_baseline(pred["time_days"], pred["event"], pred["risk"])
    cutoffs = tertile_cutoffs(pred["risk"])

    models = bundle / "models"
    models.mkdir(parents=True, exist_ok=True)
    weights = models / "model.pt"
    torch.save({k: v.detach().cpu() for k, v in state.items()}, weights)
    stale = models / "model.ts"
    if stale.exists():
        stale.unlink()
        logger.info("removed stale %s", stale)
    meta_file = bundle / "configs" / "metadata.json"
    if version is None and meta_file.is_file():
        version = json.loads(meta_file.read_text()).get("version")
    sha = sha256_file(weights)
    info = InferenceInfo(
        features=list(stats.names), map_statistics=stats.to_dict(), network=network_size(state),
        preprocessing={**DEFAULT_PREPROCESSING, **finetune_preprocessing(finetune_config), **(preprocessing or {}),
                       "map_settings": stats.settings},
        baseline={"event_times": baseline.event_times.tolist(),
                  "cumulative_hazard": baseline.cumulative_hazard_at_events.tolist(),
                  "last_follow_up": baseline.last_follow_up},
        tier_cutoffs=cutoffs, model_version=f"{version or '0.0.0'}+{sha[:12]}", weights_sha256=sha,
        training_risks=risk_range(pred["risk"]),
        provenance={"checkpoint": ckpt.name, "checkpoint_sha256": sha256_file(ckpt),
                    "training_predictions": pred_file.name, "training_patients": int(len(pred)),
                    "training_events": int(pred["event"].sum()),
                    "training_split": sorted(pred["split"].astype(str).unique().tolist()) if "split" in pred else [],
                    "packaged_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    path = info.save(models / INFO_FILE)
    if meta_file.is_file():
        _update_metadata(meta_file, info)
    info.provenance["training_risks"] = f"as written by the finetune run ({pred_file.name})"
    if manifest is not None:
        risks = recompute_training_risks(bundle, manifest, pred["patient_id"].astype(str).tolist())
        diff = float(np.max(np.abs(risks - pred["risk"].to_numpy())))
        baseline = breslow_baseline(pred["time_days"], pred["event"], risks)
        info.baseline = {"event_times": baseline.event_times.tolist(),
                         "cumulative_hazard": baseline.cumulative_hazard_at_events.tolist(),
                         "last_follow_up": baseline.last_follow_up}
        info.tier_cutoffs = tertile_cutoffs(risks)
        info.training_risks = risk_range(risks)
        info.provenance["training_risks"] = (f"recomputed with the packaged weights through this bundle's pipeline "
                                             f"(max |difference| from {pred_file.name}: {diff:.4g})")
        logger.info("training risks recomputed for %d patients (max |diff| from %s %.4g); tiers %s", len(risks),
                    pred_file.name, diff, [round(c, 4) for c in info.tier_cutoffs])
    info.save(models / INFO_FILE)
    logger.info("packaged %s (%d parameters, %d maps, tiers %s) -> %s", ckpt,
                sum(int(np.prod(v.shape)) for v in state.values()), len(stats.names),
                [round(c, 4) for c in info.tier_cutoffs], models)
    if torchscript:
        export_torchscript(bundle)
    return path


def recompute_training_risks(bundle: str | Path, manifest: str | Path, patient_ids: list[str]) -> np.ndarray:
    """Patient risks (mean slice risk) of ``patient_ids`` with the bundle's weights and pipeline."""
    import tempfile

    from voxsurv.inference.predictor import RiskPredictor
    from voxsurv.manifest import load_manifest

    table = load_manifest(manifest).set_index("patient_id")
    missing = [p for p in patient_ids if p not in table.index]
    if missing:
        raise InputError(f"{len(missing)} training patients not in the manifest (e.g. {missing[:3]})",
                         path=str(manifest), fix="pass the manifest the finetune run used")
    predictor = RiskPredictor(bundle)
    risks = []
    with tempfile.TemporaryDirectory() as tmp:
        for pid in patient_ids:
            prepared = predictor.prepare({"patient_id": pid, "image": table.loc[pid, "image"],
                                          "mask": table.loc[pid, "mask"]}, tmp)
            x = torch.stack([torch.as_tensor(s["image"]).float() for s in prepared.slices])
            with torch.no_grad():
                risks.append(float(predictor.network(x).mean()))
    return np.asarray(risks)


def _update_metadata(meta_file: Path, info: InferenceInfo) -> None:
    """Keep metadata.json's network_data_format equal to the packaged network (channels, size,
    channel names): verify_net_in_out, MONAI Label and MONAI Deploy read it from there."""
    import json

    meta = json.loads(meta_file.read_text())
    image = meta.setdefault("network_data_format", {}).setdefault("inputs", {}).setdefault("image", {})
    image["num_channels"] = info.in_channels
    image["spatial_shape"] = [info.network["img_size"], info.network["img_size"]]
    image["channel_def"] = {str(i): name for i, name in enumerate(["CT", *info.features])}
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")


def export_torchscript(bundle: str | Path, filepath: str | Path | None = None) -> Path:
    """``monai.bundle ckpt_export`` of the bundle's network to ``models/model.ts`` (traced: the
    selective scan's custom autograd Function does not script), with the config and metadata
    embedded as MONAI does."""
    from monai.bundle import ckpt_export

    bundle = Path(bundle).resolve()
    info = InferenceInfo.load(bundle / "models" / INFO_FILE)
    out = Path(filepath) if filepath else bundle / "models" / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(out), ckpt_file=str(bundle / "models" / "model.pt"),
                meta_file=str(bundle / "configs" / "metadata.json"),
                config_file=str(bundle / "configs" / "inference.yaml"), bundle_root=str(bundle),
                use_trace=True, input_shape=[1, info.in_channels, info.network["img_size"], info.network["img_size"]])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxsurv.inference.packaging", description=__doc__.split("\n\n")[0])
    p.add_argument("--finetune-output", required=True, help="the finetune bundle's output_dir")
    p.add_argument("--bundle", default="bundles/inference", help="inference bundle folder")
    p.add_argument("--checkpoint", help="weights (default FINETUNE_OUTPUT/models/model_last.pt)")
    p.add_argument("--predictions", help="training-cohort risks (default FINETUNE_OUTPUT/predictions_finetune.csv)")
    p.add_argument("--map-statistics", help="default FINETUNE_OUTPUT/map_statistics.json")
    p.add_argument("--finetune-config", help="the finetune run's train.yaml (default bundles/finetune/configs/"
                                             "train.yaml): pixdim, roi_size_mm, min_area_mm2 are read from it")
    p.add_argument("--roi-size-mm", type=float, help="override the finetune config's roi_size_mm")
    p.add_argument("--min-area-mm2", type=float, help="override the finetune config's min_area_mm2")
    p.add_argument("--manifest", help="the finetune run's cohort manifest: recompute the training patients' risks "
                                      "with the packaged weights (recommended; default: use the prediction file)")
    p.add_argument("--torchscript", action="store_true", help="also export models/model.ts")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pre = {k: v for k, v in (("roi_size_mm", args.roi_size_mm), ("min_area_mm2", args.min_area_mm2)) if v is not None}
    try:
        path = package(args.finetune_output, args.bundle, args.checkpoint, args.predictions, args.map_statistics,
                       preprocessing=pre, torchscript=args.torchscript, finetune_config=args.finetune_config,
                       manifest=args.manifest)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"packaged -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
