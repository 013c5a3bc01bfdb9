"""Publish the real study's ensembles into the bundles (issue 11): what ships is what the study
measured, nothing retrained.

    python -m voxsurv.study.publish --run runs/real_study/v2 [--manifest ../shared/data/lung_crops/manifest.csv]

* ``bundles/pretrain/models/model.pt``: row (d), the chosen candidate's SurvivalEnsemble of the
  5 folds x 3 seeds source members at the chosen epoch (one state dict).
* ``bundles/finetune/models/model.pt``: row (e), that ensemble fine-tuned on the 20 Radiogenomics
  fine-tune patients (paper mode).
* Beside each: ``map_statistics.json`` (MapStatistics of the shipped maps, fitted label-free on
  the Lung1 source cohort: what every study run used) and ``model_info.json`` (maps under
  ``features`` -- the bundles' ``selected_maps_file`` --, network kwargs, members, preprocessing,
  weights sha256, provenance).
* ``bundles/inference/models``: (e)'s fine-tuning output packaged by
  ``voxsurv.inference.packaging.package_training_output`` (Breslow baseline, tiers and training
  risk range from its 20 fine-tune patients, recomputed through the inference pipeline).
* ``performance`` / ``data_source`` of each bundle's metadata.json from the published results.

Refuses anything but a complete, non-smoke run whose results.json equals
``docs/results/real_study.json`` (publish the docs first: ``python -m voxsurv.study.report``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from voxsurv.core.errors import InputError
from voxsurv.core.jsonfile import write_json_atomic as write_json

log = logging.getLogger(__name__)

MODEL_INFO, MAP_STATISTICS = "model_info.json", "map_statistics.json"
INFO_FORMAT = "voxsurv-model-info/2"
LICENCES = {
    "lung1": "NSCLC-Radiomics (Aerts et al., Nat Commun 2014; TCIA DOI 10.7937/K9/TCIA.2015.PF0M9REI): "
             "CC BY-NC 3.0 -- non-commercial research use only",
    "radiogenomics": "NSCLC-Radiogenomics (Bakr et al., Sci Data 2018; TCIA DOI 10.7937/K9/TCIA.2017.7hs46erv); "
                     "the crops used were distributed for the 2020 ENS Challenge Data (Owkin) for "
                     "non-commercial research use only",
}
USE = ("Research use only (the training data's CC BY-NC licence: no commercial use). Not for clinical use; "
       "risks are relative within a cohort.")
PREPROCESSING_KEYS = ("pixdim", "img_size", "min_area_mm2", "fov_margin", "min_fov_mm", "hu_window")


def _repo() -> Path:
    return Path(__file__).resolve().parents[2]


def _results(run: Path, repo: Path, allow_smoke: bool = False) -> dict:
    path = run / "results.json"
    if not path.is_file():
        raise InputError("no results.json in the run folder", path=str(path), fix="pass the study's --out folder")
    res = json.loads(path.read_text())
    if res.get("format") != "voxsurv-study-results/2" or (res.get("smoke") and not allow_smoke) \
            or res.get("status") != "complete":
        raise InputError("not a complete, non-smoke issue-11 study run", path=str(path),
                         fix="run scripts/run_real_study.py to the end without --smoke")
    docs = repo / "docs/results/real_study.json"
    if not docs.is_file() or json.loads(docs.read_text()) != res:
        raise InputError("docs/results/real_study.json is not this run's results", path=str(docs),
                         fix=f"python -m voxsurv.study.report {path} docs/results/real_study.json "
                             "docs/results/real_study.md")
    return res


def _run_settings(row: dict) -> dict:
    """run_settings.json of the row's first pre-training run (the bundle's record of its inputs)."""
    first = row["bundle_runs"]["pretrain"][0]
    return json.loads((Path(first["overrides"]["output_dir"]) / "run_settings.json").read_text())


def model_info(state: dict, features: list[str], row: dict, settings: dict, provenance: dict) -> dict:
    """What a bundle needs to rebuild and feed the shipped network."""
    from voxsurv.inference.packaging import as_ensemble

    net, kwargs = as_ensemble(state)
    return {"format": INFO_FORMAT, "features": list(features),
            "channels": ["ct", *features, "mask"], "network": kwargs, "n_members": int(net.n_members),
            "preprocessing": {k: settings[k] for k in PREPROCESSING_KEYS if k in settings},
            "map_statistics_file": MAP_STATISTICS, "provenance": provenance, "study_row": row["model"]}


def _ship(models: Path, weights: Path, stats, features: list[str], row: dict, settings: dict, provenance: dict) -> dict:
    from voxsurv.inference.bundle_info import sha256_file

    state = torch.load(weights, map_location="cpu", weights_only=True)
    models.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu().contiguous() for k, v in state.items()}, models / "model.pt")
    (stats.select(features) if features else stats).save(models / MAP_STATISTICS)
    info = model_info(state, features, row, settings, {**provenance, "weights_sha256": sha256_file(models / "model.pt"),
                                                       "run_file": str(weights)})
    write_json(models / MODEL_INFO, info)
    return info


def _seal(models: Path) -> None:
    """model_info.json's weights_sha256 = the model.pt that ships (packaging re-saves it)."""
    from voxsurv.inference.bundle_info import sha256_file

    info = json.loads((models / MODEL_INFO).read_text())
    info["provenance"]["weights_sha256"] = sha256_file(models / "model.pt")
    write_json(models / MODEL_INFO, info)


def _performance(res: dict, key: str, command: str) -> dict:
    r = res["rows"][key]
    perf = {"c_index": round(r["c_index"], 3), "ci95": [round(c, 3) for c in r["ci95"]],
            "td_auc": {k: (None if v is None else round(v, 3)) for k, v in r["td_auc"].items()},
            "hazard_ratio_median_split": None if r["hr"] is None else round(r["hr"], 2),
            "logrank_p": None if r["logrank_p"] is None else round(r["logrank_p"], 4),
            "patients": r["n_test"], "events": r["events_test"], "trained_on": r["trained_on"],
            "spearman_test_risk_volume": round(r["spearman_test_risk_volume"], 3),
            "description": r["description"], "command": command,
            "source": f"docs/results/real_study.json (rows.{key})", "date": res["date"]}
    if isinstance(r.get("source_oof_c"), dict):
        o = r["source_oof_c"]
        perf["source_pooled_oof_c"] = {"mean": round(o["mean"], 3), "sd": round(o["sd"], 3), "seeds": o["n_seeds"],
                                       "epoch": o["epoch"]}
    return perf


def _set_metadata(bundle: Path, real: dict, data_source: str, changelog: str, version: str,
                  info: dict | None = None) -> None:
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    shipped = next(iter(real.values()))  # the first entry describes the shipped weights
    meta["eval_metrics"] = {"test_c_index": shipped["c_index"], "test_c_index_ci95": shipped["ci95"],
                            "test_set": "Radiogenomics test split, 79 patients (docs/results/real_study.json)"}
    if info is not None:  # network_data_format = the shipped network (verify_net_in_out reads it)
        image = meta["network_data_format"]["inputs"]["image"]
        image["num_channels"] = info["network"]["in_channels"]
        image["spatial_shape"] = [info["network"]["img_size"], info["network"]["img_size"], "*"]
        image["channel_def"] = {str(i): n for i, n in enumerate(info["channels"])}
    perf = {k: v for k, v in meta.get("performance", {}).items() if not k.startswith("real_")}
    perf.pop("note", None)
    meta["performance"] = {**real, **perf,
                           "note": "real_* entries: the shipped weights (models/model.pt) on real public data "
                                   "(docs/results/real_study.md; small cohort, wide CIs). demo_* entries: the "
                                   "synthetic demo cohort."}
    meta["data_source"] = data_source
    meta["data_licence"] = dict(LICENCES)
    meta["intended_use"] = USE
    meta["version"] = version
    meta["changelog"] = {version: changelog, **{k: v for k, v in meta.get("changelog", {}).items() if k != version}}
    write_json(meta_file, meta)


def publish(run: str | Path, repo: str | Path | None = None, manifest: str | Path | None = None,
            version: str = "0.3.0", allow_smoke: bool = False) -> dict:
    """Copy (d) and (e) + their statistics into the bundles and package (e) for inference.
    `allow_smoke` (tests only) accepts a smoke run, published into a copy of the repository."""
    from voxsurv.inference.packaging import package, package_training_output
    from voxsurv.maps.normalise import MapStatistics
    from voxsurv.study.deep_runs import read_predictions

    run, repo = Path(run), Path(repo) if repo else _repo()
    res = _results(run, repo, allow_smoke)
    features = list(res["screening"]["selected"])
    stats = MapStatistics.load(res["map_statistics"]["file"])
    command = (f"python scripts/run_real_study.py --data ../shared/data/lung_crops --out {run} "
               f"(protocol {res['protocol']['file']}, seed {res['settings']['seed']})")
    d, e = res["rows"]["d"], res["rows"]["e"]
    common = {"study_date": res["date"], "study_command": command, "chosen_candidate": res["selection"]["chosen"],
              "map_statistics": "fitted label-free on the Lung1 source cohort (every study run used them)",
              "licence": LICENCES, "intended_use": USE}
    out = {}
    out["pretrain"] = _ship(repo / "bundles/pretrain/models", Path(d["ensemble"]["file"]), stats, features, d,
                            _run_settings(d), {**common, "how": d["description"], "ensemble": d["ensemble"]})
    e_dir = Path(e["bundle_runs"]["scoring"]["overrides"]["output_dir"])
    out["finetune"] = _ship(repo / "bundles/finetune/models", e_dir / "models" / "model.pt", stats, features, e,
                            _run_settings(e), {**common, "how": e["description"], "pretrained_ensemble": e["ensemble"]})
    e_provenance = {"study_row": "e", **common, "baseline_and_tiers_from": "the 20 Radiogenomics fine-tune (training) "
                    "patients of (e) (not the source cohort, not the test split)"}
    info_path = package_training_output(e_dir, repo / "bundles/inference", manifest=manifest, version=version,
                                        provenance=e_provenance)
    # pretrain and finetune carry models/inference_info.json too: their configs/inference.yaml (what
    # the model zoo's verify_bundle and MONAI Label run) needs it.
    package_training_output(e_dir, repo / "bundles/finetune", manifest=manifest, version=version,
                            provenance=e_provenance)
    d_scored = Path(d["bundle_runs"]["scoring"]["overrides"]["output_dir"])
    package(repo / "bundles/pretrain/models/model.pt", repo / "bundles/pretrain",
            manifest or _run_settings(d)["manifest"], map_statistics=repo / "bundles/pretrain/models" / MAP_STATISTICS,
            features=features, preprocessing=_run_settings(d), version=version,
            patient_ids=read_predictions(d_scored, "train")["patient_id"].tolist(),
            provenance={"study_row": "d", **common, "baseline_and_tiers_from": "the Lung1 source patients (d's own "
                        "training patients: in-sample risks)"})
    for bundle in ("pretrain", "finetune"):  # packaging re-saves model.pt: the info records the final file
        _seal(repo / "bundles" / bundle / "models")
    src_txt = "Shipped weights (models/model.pt): trained on real data -- " + LICENCES["lung1"] + "; "
    _set_metadata(repo / "bundles/pretrain", {"real_radiogenomics_test_d": _performance(res, "d", command)},
                  src_txt + "reported on the Radiogenomics test split. The train.yaml default trains on the synthetic "
                  "demo cohort instead.", f"ships the study's source ensemble (row d, {d['ensemble']['n_members']} "
                  "members)", version, out["pretrain"])
    _set_metadata(repo / "bundles/finetune", {"real_radiogenomics_test_e": _performance(res, "e", command),
                                              "real_radiogenomics_test_d_pretrained_only": _performance(res, "d", command)},
                  src_txt + LICENCES["radiogenomics"] + ". The train.yaml default trains on the synthetic demo cohort.",
                  "ships the study's fine-tuned ensemble (row e)", version, out["finetune"])
    _set_metadata(repo / "bundles/inference", {"real_radiogenomics_test_e": _performance(res, "e", command)},
                  "Default weights: study row (e), " + LICENCES["lung1"] + "; fine-tuned on " + LICENCES["radiogenomics"]
                  + ". Inputs: any CT (HU) + tumour mask as NIfTI/NRRD, or a DICOM CT series + RTSTRUCT.",
                  "default weights = the study's fine-tuned ensemble (e); baseline + tiers from its 20 fine-tune patients",
                  version)
    out["inference"] = json.loads(Path(info_path).read_text())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m voxsurv.study.publish", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="the study's output folder (--out of scripts/run_real_study.py)")
    p.add_argument("--manifest", help="manifest of the fine-tune patients' images (default: the run's own)")
    p.add_argument("--version", default="0.3.0")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = publish(args.run, manifest=args.manifest, version=args.version)
    for k in ("pretrain", "finetune"):
        print(f"{k}: {out[k]['n_members']} members, {len(out[k]['features'])} maps, {out[k]['network']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
