"""Package trained weights into the inference bundle: ``models/model.pt`` (the network as a
``networks.SurvivalEnsemble``: a finetune output's single network becomes a 1-member ensemble,
the study's fold x seed ensemble file is taken as it is) and ``models/inference_info.json`` with
everything fitted with them: the maps and their statistics, the network's arguments, the
preprocessing settings of training, and -- from the TRAINING patients' risks recomputed with the
packaged weights through this bundle's own pipeline -- the Breslow baseline, the tier cut-offs and
the training risk range.

    # a finetune (or pretrain) bundle's output folder (its settings and training patients are read there)
    python -m voxsurv.inference.packaging --training-output bundles/finetune/outputs --bundle bundles/inference
    # an assembled ensemble file (the study), with its statistics and settings
    python -m voxsurv.inference.packaging --weights ensemble.pt --map-statistics map_statistics.json \
        --features-file selected_maps.json --manifest manifest.csv --training-split train --bundle bundles/inference

Why recompute: the risks a training run wrote need not come from the weights that are shipped
(an epoch's file, a changed working tree); the stored calibration must follow the stored weights.
A stale ``models/model.ts`` is deleted (MONAI Deploy would prefer it over model.pt); with
``--torchscript`` a fresh one is exported from the new weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from voxsurv.core.errors import InputError
from voxsurv.inference.bundle_info import (INFO_FILE, PREPROCESSING_KEYS, InferenceInfo, sha256_file,
                                           tertile_cutoffs)

logger = logging.getLogger(__name__)

#: patient_preprocessing's defaults (custom_transforms.pipeline), i.e. what training uses unless told otherwise
DEFAULT_PREPROCESSING = {"pixdim": [1.0, 1.0, 5.0], "img_size": 48, "min_area_mm2": 10.0, "fov_margin": 0.15,
                         "min_fov_mm": 20.0, "hu_window": [250.0, 30.0], "maps_backend": "torch"}
#: files of a training bundle's output folder (voxsurv.training): final weights, map statistics, run settings
OUTPUT_WEIGHTS, OUTPUT_STATISTICS, OUTPUT_SETTINGS = "models/model.pt", "map_statistics.json", "run_settings.json"


def read_state_dict(path: str | Path) -> dict:
    """A plain state dict from a weights file (also MONAI full-state checkpoints ``{"model": ...}``),
    with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputError("weights file not found", path=str(path), fix="check the path (train the bundle first)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        raise InputError(f"not a readable torch weights file ({type(exc).__name__})", path=str(path),
                         fix="pass the models/model.pt a voxsurv bundle wrote") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError("the file holds no state dict of tensors", path=str(path),
                         fix="pass the models/model.pt a voxsurv bundle wrote")
    return state


def as_ensemble(state: dict, path: str | Path | None = None):
    """(SurvivalEnsemble, member kwargs) rebuilt from a single-network or ensemble state dict,
    loaded strictly."""
    from networks import SurvivalEnsemble
    from networks.ensemble import network_from_state_dict
    from networks.vision_mamba import VisionMambaSurv

    try:
        net = network_from_state_dict(state)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise InputError(f"not a VisionMambaSurv / SurvivalEnsemble state dict ({str(exc).splitlines()[0]})",
                         path=None if path is None else str(path),
                         fix="package the models/model.pt of a voxsurv training run or an ensemble file") from None
    if not isinstance(net, SurvivalEnsemble):
        net = SurvivalEnsemble.from_members([net])
    first = {k[len("members.0."):]: v for k, v in net.state_dict().items() if k.startswith("members.0.")}
    kwargs = VisionMambaSurv.kwargs_from_state_dict(first)
    kwargs.setdefault("pooling", "mean")
    kwargs.setdefault("n_descriptors", 0)
    kwargs.setdefault("attention_dim", None)
    return net, kwargs


def inference_preprocessing(recorded: dict | None) -> dict:
    """The inference bundle's ``preprocessing`` (patient_preprocessing's arguments) for a training run
    that recorded ``recorded`` (its run_settings.json, or the settings given): the recorded values
    of :data:`PREPROCESSING_KEYS`, the defaults of the training chain for the rest. One function, so
    tests/test_bundle_chains.py can check that the bundles' training chain equals what inference
    rebuilds from it."""
    pre = {**DEFAULT_PREPROCESSING, **{k: v for k, v in (recorded or {}).items() if k in PREPROCESSING_KEYS}}
    pre["pixdim"] = [float(v) for v in pre["pixdim"]]
    pre["hu_window"] = [float(v) for v in pre["hu_window"]]
    return pre


def read_training_settings(output_dir: str | Path) -> dict:
    """What a training run recorded about itself (``run_settings.json``: features, preprocessing,
    network, manifest, splits, seed; voxsurv.training.run_record)."""
    path = Path(output_dir) / OUTPUT_SETTINGS
    if not path.is_file():
        raise InputError("not a voxsurv training output (no run_settings.json)", path=str(path),
                         fix="pass the output_dir of a pretrain/finetune bundle run, or use --weights with "
                             "--map-statistics, --features-file and the settings")
    return json.loads(path.read_text())


def run_training_patients(settings: dict, manifest: str | Path | None = None):
    """The rows a training run trained on, assigned exactly as its data module did
    (voxsurv.training.patients.SurvivalPatients: cohort, split column or drawn split, CV fold)."""
    import tempfile

    from voxsurv.training.patients import SurvivalPatients

    own = settings.get("manifest")
    manifest = manifest or own
    if not manifest:
        raise InputError("the run's settings name no manifest", fix="pass --manifest")
    splits = settings.get("splits", {})

    def assign(path):
        with tempfile.TemporaryDirectory() as tmp:
            data = SurvivalPatients(path, None, None, cache_dir=tmp, output_dir=tmp, cohort=settings.get("cohort"),
                                    train_split=splits.get("train", "train"), val_split=splits.get("val"),
                                    test_split=splits.get("test"), fold=splits.get("fold"),
                                    n_folds=int(splits.get("n_folds", 5)), seed=int(settings.get("seed", 0)),
                                    finetune_fraction=float(settings.get("finetune_fraction", 0.2)))
            return data.patients("train")

    patients = assign(manifest)
    if own and Path(own).is_file() and Path(own).resolve() != Path(manifest).resolve():
        # another manifest (e.g. with paths valid here) must assign the run's own training patients:
        # one without the run's split column would draw a different split, silently
        run_ids = set(assign(own)["patient_id"].astype(str))
        if set(patients["patient_id"].astype(str)) != run_ids:
            raise InputError(f"this manifest gives {len(patients)} training patients, the run trained on "
                             f"{len(run_ids)} others (no split column like the run's?)", path=str(manifest),
                             fix=f"leave --manifest out to use the run's own manifest ({own})")
    return patients


def training_patients(manifest: str | Path, splits: list[str] | None = None, patient_ids=None,
                      splits_file: str | Path | None = None):
    """The training patients (patient_id, image, mask, time_days, event) from a manifest: the
    rows whose split (the manifest's ``split`` column, or ``splits_file``'s) is in ``splits``, or
    the rows of ``patient_ids``."""
    import pandas as pd

    from voxsurv.data.manifest import load_manifest

    table = load_manifest(manifest)
    if splits_file is not None:
        roles = pd.read_csv(splits_file, dtype={"patient_id": str, "split": str})[["patient_id", "split"]]
        table = table.drop(columns=["split"], errors="ignore").merge(roles, on="patient_id", how="inner")
    if patient_ids is not None:
        ids = [str(p) for p in patient_ids]
        missing = [p for p in ids if p not in set(table["patient_id"])]
        if missing:
            raise InputError(f"{len(missing)} training patients are not in the manifest (e.g. {missing[:3]})",
                             path=str(manifest), fix="pass the manifest the training run used")
        table = table.set_index("patient_id").loc[ids].reset_index()
    elif splits:
        if "split" not in table.columns:
            raise InputError("the manifest has no split column to pick the training patients from", path=str(manifest),
                             fix="add a split column, pass --splits-file (the run's splits.csv) or --patients")
        table = table[table["split"].astype(str).isin(splits)]
    if len(table) < 3:
        raise InputError(f"{len(table)} training patients (splits {splits}): the tier cut-offs need at least 3",
                         path=str(manifest), fix="check --training-split / --splits-file")
    return table.reset_index(drop=True)


def _provisional_info(features, stats, kwargs, n_members, preprocessing) -> InferenceInfo:
    """Info to run the pipeline before the calibration exists (never saved)."""
    return InferenceInfo(features=list(features), map_statistics=stats.to_dict() if stats is not None else None,
                         network=kwargs, n_members=n_members, preprocessing=preprocessing,
                         baseline={"event_times": [], "cumulative_hazard": [], "last_follow_up": 0.0},
                         tier_cutoffs=[0.0, 0.0], training_risk_range=[0.0, 0.0])


def package(weights: str | Path, bundle: str | Path, manifest: str | Path, map_statistics: str | Path | None = None,
            features: list[str] | None = None, preprocessing: dict | None = None,
            training_split: list[str] | None = ("train",), patient_ids=None, splits_file: str | Path | None = None,
            version: str | None = None, torchscript: bool = False, provenance: dict | None = None) -> Path:
    """Write ``bundle/models/model.pt`` + ``inference_info.json``; returns the info path.

    Args:
        weights: a single network's or an ensemble's state dict file.
        bundle: the inference bundle folder (``configs/inference.yaml`` inside).
        manifest: cohort manifest holding the training patients (patient_id, image, mask, time_days, event).
        map_statistics: MapStatistics JSON the network was trained with (None only without maps).
        features: the maps in channel order; default: the statistics' maps when their count fits
            the network (in_channels = 2 + maps).
        preprocessing: patient_preprocessing settings of training (:data:`PREPROCESSING_KEYS`);
            missing ones take the defaults (:data:`DEFAULT_PREPROCESSING`).
        training_split, patient_ids, splits_file: which manifest rows are the training patients
            (see :func:`training_patients`).
        version: bundle version recorded (default: metadata.json's).
        torchscript: also export ``models/model.ts``.
        provenance: extra entries for the info's provenance (study row, command, licences ...).
    """
    from voxsurv.stats.calibration import breslow_baseline
    from voxsurv.maps.normalise import MapStatistics

    bundle = Path(bundle)
    if not (bundle / "configs" / "inference.yaml").is_file():
        raise InputError("not an inference bundle (configs/inference.yaml missing)", path=str(bundle),
                         fix="pass --bundle bundles/inference (or a copy of it)")
    state = read_state_dict(weights)
    net, kwargs = as_ensemble(state, weights)
    stats = MapStatistics.load(map_statistics) if map_statistics else None
    n_maps = int(kwargs["in_channels"]) - 2
    if features is None:
        if stats is None and n_maps == 0:
            features = []
        elif stats is not None and len(stats.names) == n_maps:
            features = list(stats.names)
        else:
            raise InputError(f"the network takes {n_maps} maps (+ CT + mask) but the statistics name "
                             f"{0 if stats is None else len(stats.names)}: which ones is not known",
                             path=str(map_statistics or weights), fix="pass the run's feature list (--features-file)")
    features = list(features)
    if len(features) != n_maps:
        raise InputError(f"the network takes {kwargs['in_channels']} channels but ct + {len(features)} maps + mask "
                         f"= {len(features) + 2}", path=str(weights), fix="pass the features the run trained with")
    if features and (stats is None or not set(features) <= set(stats.names)):
        raise InputError("the map statistics do not hold every feature", path=str(map_statistics),
                         fix="pass the statistics of the same training run")
    if stats is not None and features:
        stats = stats.select(features)
    pre = inference_preprocessing(preprocessing)
    if int(pre["img_size"]) != int(kwargs["img_size"]):
        raise InputError(f"preprocessing img_size {pre['img_size']} but the network was built for "
                         f"{kwargs['img_size']} px", path=str(weights), fix="pass the run's img_size")
    patients = training_patients(manifest, list(training_split) if training_split else None, patient_ids, splits_file)

    models = bundle / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / "model.pt"
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, target)
    stale = models / "model.ts"
    if stale.exists():
        stale.unlink()
        logger.info("removed stale %s", stale)
    sha = sha256_file(target)
    info = _provisional_info(features, stats, kwargs, net.n_members, pre)
    risks = recompute_risks(bundle, info, patients)
    baseline = breslow_baseline(patients["time_days"], patients["event"], risks)
    meta_file = bundle / "configs" / "metadata.json"
    if version is None and meta_file.is_file():
        version = json.loads(meta_file.read_text()).get("version")
    info.baseline = {"event_times": baseline.event_times.tolist(),
                     "cumulative_hazard": baseline.cumulative_hazard_at_events.tolist(),
                     "last_follow_up": baseline.last_follow_up}
    info.tier_cutoffs = tertile_cutoffs(risks)
    info.training_risk_range = [float(np.min(risks)), float(np.max(risks))]
    info.model_version = f"{version or '0.0.0'}+{sha[:12]}"
    info.weights_sha256 = sha
    info.provenance = {
        "weights": Path(weights).name, "weights_file_sha256": sha256_file(weights), "n_members": net.n_members,
        "training_patients": int(len(patients)), "training_events": int(patients["event"].sum()),
        "training_split": list(training_split or []) if patient_ids is None else "listed patients",
        "training_risks": "recomputed with the packaged weights through this bundle's pipeline (patient_preprocessing "
                          "+ network); Breslow baseline, tertiles and range fitted on them",
        "packaged_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(provenance or {})}
    path = info.save(models / INFO_FILE)
    InferenceInfo.load(path)  # the checks a user's run does
    if meta_file.is_file():
        _update_metadata(meta_file, info)
    logger.info("packaged %s (%d members, %d maps, %d training patients, tiers %s, risk range %s) -> %s", weights,
                net.n_members, len(features), len(patients), [round(c, 4) for c in info.tier_cutoffs],
                [round(c, 4) for c in info.training_risk_range], models)
    if torchscript:
        export_torchscript(bundle)
    return path


def package_training_output(output_dir: str | Path, bundle: str | Path, manifest: str | Path | None = None,
                            **kwargs) -> Path:
    """:func:`package` for a pretrain/finetune bundle's output folder: its final ``models/model.pt``,
    ``map_statistics.json``, the settings it recorded (``run_settings.json``) and ITS training
    patients (the same role assignment as the run); keyword arguments override."""
    out = Path(output_dir)
    settings = read_training_settings(out)
    pre = {k: settings[k] for k in PREPROCESSING_KEYS if k in settings}
    pre.update(kwargs.pop("preprocessing", None) or {})
    if "features" not in kwargs and isinstance(settings.get("features"), list):
        kwargs["features"] = settings["features"]
    manifest = manifest or settings.get("manifest")
    if "patient_ids" not in kwargs and not kwargs.get("splits_file"):
        ids = run_training_patients(settings, manifest)["patient_id"].astype(str).tolist()
        excluded = _excluded_by_run(out)
        kwargs["patient_ids"] = [p for p in ids if p not in excluded]
        kwargs.setdefault("provenance", {}).update({
            "training_role": (f"the run's training patients (split {settings.get('splits', {}).get('train')!r}, "
                              f"fold {settings.get('splits', {}).get('fold')}, cohort {settings.get('cohort')!r})"),
            "excluded_by_the_run": sorted(set(ids) & excluded)})
    if "patient_ids" in kwargs:
        kwargs.pop("training_split", None)
    stats = kwargs.pop("map_statistics", None) or (out / OUTPUT_STATISTICS if (out / OUTPUT_STATISTICS).is_file() else None)
    return package(kwargs.pop("weights", None) or out / OUTPUT_WEIGHTS, bundle, manifest, map_statistics=stats,
                   preprocessing=pre, **kwargs)


def _excluded_by_run(output_dir: Path) -> set[str]:
    """Patients the training run excluded (bad input; its excluded_patients.csv)."""
    import pandas as pd

    path = output_dir / "excluded_patients.csv"
    if not path.is_file():
        return set()
    return set(pd.read_csv(path, dtype={"patient_id": str})["patient_id"].astype(str))


def recompute_risks(bundle: str | Path, info: InferenceInfo, patients) -> np.ndarray:
    """Patient risks of ``patients`` (rows with patient_id, image, mask) with the bundle's weights
    and its own preprocessing + network, configured by ``info``."""
    from voxsurv.inference.predictor import RiskPredictor

    predictor = RiskPredictor(bundle, info=info)
    risks = []
    for i, row in enumerate(patients.itertuples(index=False), start=1):
        prepared = predictor.prepare({"patient_id": row.patient_id, "image": row.image, "mask": row.mask})
        risks.append(predictor.risk(prepared))
        logger.info("training patient %d/%d %s: risk %.4f", i, len(patients), row.patient_id, risks[-1])
    return np.asarray(risks, dtype=float)


def _update_metadata(meta_file: Path, info: InferenceInfo) -> None:
    """Keep metadata.json's network_data_format equal to the packaged network (channels, size,
    channel names): verify_net_in_out, MONAI Label and MONAI Deploy read it from there."""
    meta = json.loads(meta_file.read_text())
    image = meta.setdefault("network_data_format", {}).setdefault("inputs", {}).setdefault("image", {})
    image["num_channels"] = info.in_channels
    size = int(info.network["img_size"])
    image["spatial_shape"] = [size, size, "*"]
    image["channel_def"] = {str(i): name for i, name in enumerate(info.channel_names)}
    meta_file.write_text(json.dumps(meta, indent=4) + "\n")


def export_torchscript(bundle: str | Path, filepath: str | Path | None = None) -> Path:
    """``monai.bundle ckpt_export`` of the bundle's network to ``models/model.ts`` (scripted), with
    the config and metadata embedded as MONAI does."""
    from monai.bundle import ckpt_export

    bundle = Path(bundle).resolve()
    out = Path(filepath) if filepath else bundle / "models" / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(out), ckpt_file=str(bundle / "models" / "model.pt"),
                meta_file=str(bundle / "configs" / "metadata.json"),
                config_file=str(bundle / "configs" / "inference.yaml"), bundle_root=str(bundle))
    return out


def _read_features(path: str | None) -> list[str] | None:
    """A feature list from JSON (a list, or an object with ``features``) or a text file (one a line)."""
    if not path:
        return None
    text = Path(path).read_text()
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return [line.strip() for line in text.splitlines() if line.strip()]
    return list(obj["features"] if isinstance(obj, dict) else obj)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxsurv.inference.packaging", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--training-output", help="a pretrain/finetune bundle's output_dir (models/model.pt, "
                                               "map_statistics.json, run_settings.json: its training patients)")
    src.add_argument("--weights", help="a weights file: one network or a SurvivalEnsemble (e.g. the study's)")
    p.add_argument("--bundle", default="bundles/inference", help="inference bundle folder")
    p.add_argument("--manifest", help="cohort manifest holding the training patients (default with "
                                      "--training-output: the run's)")
    p.add_argument("--training-split", nargs="+", default=["train"],
                   help="with --weights: split value(s) of the training patients in the manifest")
    p.add_argument("--splits-file", help="CSV patient_id, split (the run's splits.csv) when the manifest has no split")
    p.add_argument("--map-statistics", help="MapStatistics JSON (default TRAINING_OUTPUT/map_statistics.json)")
    p.add_argument("--features-file", help="the maps in channel order (JSON list / {features: [...]} / one a line)")
    for key in ("img_size", "min_area_mm2", "fov_margin", "min_fov_mm"):
        p.add_argument(f"--{key.replace('_', '-')}", type=float if key != "img_size" else int,
                       help=f"training's {key} (default: the run's or {DEFAULT_PREPROCESSING[key]})")
    p.add_argument("--torchscript", action="store_true", help="also export models/model.ts")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pre = {k: getattr(args, k) for k in ("img_size", "min_area_mm2", "fov_margin", "min_fov_mm")
           if getattr(args, k) is not None}
    common = dict(splits_file=args.splits_file, torchscript=args.torchscript)
    if not args.training_output:
        if not args.manifest:
            p.error("--weights needs --manifest")
        common["training_split"] = args.training_split
    features = _read_features(args.features_file)
    if features is not None:
        common["features"] = features
    try:
        if args.training_output:
            path = package_training_output(args.training_output, args.bundle, args.manifest, preprocessing=pre,
                                           map_statistics=args.map_statistics, **common)
        else:
            path = package(args.weights, args.bundle, args.manifest, map_statistics=args.map_statistics,
                           preprocessing=pre, **common)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"packaged -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
