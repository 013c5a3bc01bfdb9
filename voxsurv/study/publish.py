"""Publish the real study's trained models into the bundles (issue 8, part 3).

    python -m voxsurv.study.publish --run runs/real_study/full [--manifest ../shared/data/lung_crops/manifest.csv]

* ``bundles/pretrain/models/model.pt``: row (d), pre-trained on Lung1 (``pretrained_maps.pt``).
* ``bundles/finetune/models/model.pt``: row (e), (d) fine-tuned on the 20 Radiogenomics fine-tune
  patients with the stem + first 2 blocks frozen (``finetuned_maps.pt``).
* Beside each: ``model_info.json`` (selected maps under ``features`` -- so the file doubles as the
  bundles' ``selected_maps_file`` --, VisionMambaSurv settings, preprocessing, weights sha256,
  provenance) and ``map_statistics.json`` (MapStatistics fitted on the Lung1 source cohort: both
  rows were trained with these).
* ``bundles/inference/models``: (e) packaged by ``voxsurv.inference.packaging.package``; the Breslow
  baseline and risk-tier cut-offs come from the TRAINING patients of (e)'s fine-tuning (the 20
  fine-tune patients), recomputed through the inference pipeline when ``--manifest`` is given.
* ``performance`` / ``data_source`` of each bundle's metadata.json from ``docs/results/real_study.json``.

Weights are stored as plain CPU state dicts (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

import torch

log = logging.getLogger(__name__)

MODEL_INFO = "model_info.json"
MAP_STATISTICS = "map_statistics.json"
STUDY_COMMAND = ("python scripts/run_real_study.py --data ../shared/data/lung_crops --out runs/real_study/full "
                 "--maps-cache runs/real_study/maps_cache --source-cv (seed 0, 2 shared CPU cores)")
LICENCES = {
    "lung1": "NSCLC-Radiomics (Aerts et al., Nat Commun 2014; TCIA DOI 10.7937/K9/TCIA.2015.PF0M9REI): "
             "CC BY-NC 3.0 -- non-commercial research use only",
    "radiogenomics": "NSCLC-Radiogenomics (Bakr et al., Sci Data 2018; TCIA DOI 10.7937/K9/TCIA.2017.7hs46erv); "
                     "the crops used were distributed for the 2020 ENS Challenge Data (Owkin) for "
                     "non-commercial research use only",
}
USE = ("Research use only (the training data's CC BY-NC licence: no commercial use). Not for clinical use; "
       "risks are relative within a cohort.")


def _repo() -> Path:
    from voxsurv.training.runner import repo_root

    return Path(repo_root())


def model_info(state: dict, features: list[str], settings: dict, provenance: dict) -> dict:
    """What a bundle needs to rebuild and feed the shipped network."""
    from voxsurv.inference.packaging import network_size

    net = network_size(state)
    return {"format": "voxsurv-model-info/1", "features": list(features),
            "network": {"in_channels": int(state["stem.conv1.conv.weight"].shape[1]), **net},
            "preprocessing": {"pixdim": [1.0, 1.0, 5.0], "roi_size_mm": float(settings["roi_size_mm"]),
                              "img_size": int(settings["img_size"]), "min_area_mm2": float(settings["min_area_mm2"]),
                              "hu_window": {"width": 250.0, "level": 30.0}, "ct_zscore_region": "mask",
                              "maps_backend": "torch", "aggregation": "mean of slice risks"},
            "map_statistics_file": MAP_STATISTICS, "provenance": provenance}


def _save_state(src: Path, dst: Path) -> dict:
    state = torch.load(src, map_location="cpu", weights_only=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, dst)
    return state


def _performance(study: dict, key: str) -> dict:
    r = study["rows"][key]
    perf = {"c_index": round(r["c_index"], 3), "ci95": [round(c, 3) for c in r["ci95"]],
            "td_auc": {k: (None if v is None else round(v, 3)) for k, v in r["td_auc"].items()},
            "hazard_ratio_median_split": round(r["hr"], 2), "logrank_p": round(r["logrank_p"], 4),
            "patients": r["n_test"], "events": r["events_test"], "trained_on": r["trained_on"],
            "n_train": r["n_train"], "events_train": r["events_train"],
            "description": r["description"], "command": STUDY_COMMAND,
            "source": "docs/results/real_study.json (rows." + key + ")", "date": study["date"]}
    return perf


def _set_metadata(bundle: Path, real: dict, data_source: str, changelog: str, version: str = "0.2.0",
                  info: dict | None = None) -> None:
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    if info is not None:  # network_data_format = the shipped network (verify_net_in_out reads it)
        image = meta["network_data_format"]["inputs"]["image"]
        image["num_channels"] = info["network"]["in_channels"]
        image["spatial_shape"] = [info["network"]["img_size"]] * 2
        image["channel_def"] = {str(i): n for i, n in enumerate(["CT", *info["features"]])}
    perf = meta.get("performance", {})
    perf.pop("note", None)
    meta["performance"] = {**real, **perf,
                           "note": "real_* entries: the shipped weights (models/model.pt) on real public data "
                                   "(docs/results/real_study.md; small cohort, wide CIs). demo_* entries: the "
                                   "synthetic demo cohort."}
    meta["data_source"] = data_source
    meta["data_licence"] = dict(LICENCES)
    meta["intended_use"] = USE
    meta["version"] = version
    meta.setdefault("changelog", {})
    meta["changelog"] = {version: changelog, **{k: v for k, v in meta["changelog"].items() if k != version}}
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")


def publish(run: str | Path, repo: str | Path | None = None, manifest: str | Path | None = None) -> dict:
    """Copy (d) and (e) + their statistics into the bundles and package (e) for inference."""
    from voxelmaps.normalise import MapStatistics
    from voxsurv.inference.bundle_info import sha256_file
    from voxsurv.inference.packaging import package

    run, repo = Path(run), Path(repo) if repo else _repo()
    study = json.loads((repo / "docs/results/real_study.json").read_text())
    if study.get("smoke") or study.get("status") != "complete":
        raise RuntimeError("docs/results/real_study.json is not a complete full run")
    features = list(study["selected_maps"]["selected"] if isinstance(study["selected_maps"], dict)
                    else study["selected_maps"])
    stats_file = run / "map_statistics_source.json"
    stats = MapStatistics.load(stats_file)
    if list(stats.names) != features:
        raise RuntimeError(f"{stats_file} maps {stats.names} != the study's selected maps {features}")
    s = study["settings"]
    common = {"study_date": study["date"], "study_seed": s["seed"], "study_command": STUDY_COMMAND,
              "map_statistics": "fitted on the Lung1 source cohort (map_statistics_source.json of the run)",
              "licence": LICENCES, "intended_use": USE}
    out = {}
    for bundle, src, key, how in (
            ("pretrain", "pretrained_maps.pt", "d",
             f"pre-trained on Lung1 (fold 0 of 5 held out to pick the epoch; {s['pretrain_epochs']} epochs, "
             f"AdamW lr {s['pretrain_lr']}, batch {s['batch_size']})"),
            ("finetune", "finetuned_maps.pt", "e",
             f"the pre-trained model (d) fine-tuned on the 20 Radiogenomics fine-tune patients "
             f"(stem + first {s['frozen_blocks']} blocks frozen; {s['finetune_epochs']} epochs, AdamW lr {s['finetune_lr']})")):
        models = repo / "bundles" / bundle / "models"
        state = _save_state(run / src, models / "model.pt")
        shutil.copyfile(stats_file, models / MAP_STATISTICS)
        info = model_info(state, features, s, {**common, "study_row": key, "how": how, "run_file": src,
                                                "weights_sha256": sha256_file(models / "model.pt")})
        (models / MODEL_INFO).write_text(json.dumps(info, indent=1) + "\n")
        out[bundle] = info
    # inference bundle: (e), baseline + tiers from (e)'s fine-tune (training) patients
    e_train = repo / "docs/results/real_study_predictions/e_train.csv"
    info_path = package(run, repo / "bundles/inference", checkpoint=repo / "bundles/finetune/models/model.pt",
                        predictions=e_train, map_statistics=stats_file,
                        preprocessing={"roi_size_mm": float(s["roi_size_mm"]), "min_area_mm2": float(s["min_area_mm2"])},
                        version="0.2.0", manifest=manifest)
    inf = json.loads(info_path.read_text())
    inf["provenance"].update({"study_row": "e", "baseline_and_tiers_from": "the 20 Radiogenomics fine-tune (training) "
                              "patients of (e) (not the source cohort, not the test split)", **common})
    info_path.write_text(json.dumps(inf, indent=1) + "\n")
    d, e = _performance(study, "d"), _performance(study, "e")
    cv = study.get("source_cv_pretrained_d") or {}
    if cv:
        d["source_5fold_cv_c"] = {"mean_selected_epoch": round(cv["mean_c_selected_epoch"], 3),
                                  "mean_last_epoch": round(cv["mean_c_last_epoch"], 3), "note": cv.get("note")}
    src_txt = ("Shipped weights (models/model.pt): trained on real data -- " + LICENCES["lung1"] + "; ")
    _set_metadata(repo / "bundles/pretrain", {"real_radiogenomics_test_d": d},
                  src_txt + "reported on the Radiogenomics test split (79 patients). The train.yaml default "
                  "trains on the synthetic demo cohort (source) instead.",
                  "ships the real-data pre-trained model (study row d, Lung1) in models/", info=out["pretrain"])
    _set_metadata(repo / "bundles/finetune", {"real_radiogenomics_test_e": e, "real_radiogenomics_test_d_pretrained_only": d},
                  src_txt + LICENCES["radiogenomics"] + ". The train.yaml default trains on the synthetic demo cohort.",
                  "ships the real-data fine-tuned model (study row e) in models/; "
                  "by default the main command fine-tunes the shipped pre-trained weights", info=out["finetune"])
    _set_metadata(repo / "bundles/inference", {"real_radiogenomics_test_e": e},
                  "Default weights: study row (e), " + LICENCES["lung1"] + "; fine-tuned on " + LICENCES["radiogenomics"]
                  + ". Inputs: any CT (HU) + tumour mask as NIfTI/NRRD, or a DICOM CT series + RTSTRUCT.",
                  "default weights = the real study's fine-tuned model (e); baseline + tiers from its 20 fine-tune patients")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxsurv.study.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the study's output folder (runs/real_study/full)")
    p.add_argument("--manifest", help="lung_crops manifest: recompute the fine-tune patients' risks through the "
                                      "inference pipeline for the Breslow baseline and tiers")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = publish(args.run, manifest=args.manifest)
    for k, v in out.items():
        print(f"{k}: {v['network']} {len(v['features'])} maps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
