"""Issue 13, what a clinician reads: report.json says whether the risk lies in the training range
(with a plain warning when not), the tier rule and the number of patients it came from, whether
the tumour exceeded the field of view (its largest extent vs the crop), one version scheme; the
overlay PNG shows exactly the slices the JSON lists, with orientation letters, the model version,
the date and "research use only"."""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from inference_helpers import shared_tiny_bundle
from voxsurv.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def phantom(ibsi):
    d = ibsi / "ct_phantom" / "nifti"
    return str(d / "image" / "phantom.nii.gz"), str(d / "mask" / "mask.nii.gz")


@pytest.fixture(scope="module")
def narrow_bundle(tmp_path_factory):
    """The tiny bundle with a training risk range no risk can fall in (as the IBSI phantom's 0.786
    lay far above every training patient of the shipped model)."""
    root = tmp_path_factory.mktemp("narrow")
    bundle = root / "bundle"
    shutil.copytree(shared_tiny_bundle(), bundle)
    info_file = bundle / "models" / "inference_info.json"
    info = json.loads(info_file.read_text())
    info["training_risk_range"] = [-100.0, -99.0]
    info_file.write_text(json.dumps(info))
    return bundle


@pytest.fixture(scope="module")
def run(narrow_bundle, phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("report_fields") / "out"
    import io
    from contextlib import redirect_stderr, redirect_stdout

    err, std = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(std):
        rc = main(["predict", "--bundle", str(narrow_bundle), "--image", phantom[0], "--mask", phantom[1],
                   "--patient-id", "ibsi-phantom", "--out", str(out)])
    assert rc == 0, err.getvalue()
    report = json.loads((out / "ibsi-phantom" / "report.json").read_text())
    return report, out / "ibsi-phantom", err.getvalue()


def test_a_risk_outside_the_training_range_is_flagged_in_plain_words(run):
    report, _, err = run
    assert report["in_training_range"] is False and report["training_risk_range"] == [-100.0, -99.0]
    note = report["risk_range"]["note"]
    assert "lies outside the range" in note and "-100.000 to -99.000" in note and "extrapolation" in note
    assert note in report["warnings"]
    assert "warning: the risk" in err and "lies outside the range" in err  # said on the terminal too


def test_risk_range_rule_unit():
    from voxsurv.inference.report_fields import risk_range

    inside = risk_range(0.1, [-0.5, 0.5], 20)
    assert inside["in_training_range"] is True and inside["note"] == ""
    above = risk_range(0.786, [-0.9, -0.1], 20)
    assert above["in_training_range"] is False and "the 20 training patients' risks (-0.900 to -0.100)" in above["note"]
    unknown = risk_range(0.1, None, 20)
    assert unknown["in_training_range"] is None and "does not record" in unknown["note"]


def test_the_tier_rule_and_the_n_it_came_from(run, narrow_bundle):
    report, _, _ = run
    info = json.loads((narrow_bundle / "models" / "inference_info.json").read_text())
    rule = report["tier_rule"]
    c1, c2 = info["tier_cutoffs"]
    assert rule["cutoffs"] == pytest.approx([c1, c2])
    assert rule["rule"] == (f"Low if risk < {c1:.4f}; Intermediate if {c1:.4f} <= risk < {c2:.4f}; "
                            f"High if risk >= {c2:.4f}")
    n = info["provenance"]["training_patients"]
    assert rule["n_patients"] == n and f"tertiles of the risks of {n} patients" in rule["fitted_on"]
    assert "uncertain" in rule["note"]  # a handful of patients: said


def test_tumour_extent_vs_field_of_view(run, phantom):
    report, _, _ = run
    fov = report["field_of_view"]
    # the IBSI phantom's GTV is about 97 mm wide in-plane (measured on its mask)
    assert 90 < fov["tumour_max_inplane_extent_mm"] < 105
    assert fov["field_of_view_mm"] == pytest.approx(report["field_of_view_mm"])
    assert fov["cut_slices"] == report["tumour_cut_slices"]
    assert report["tumour_exceeds_field_of_view"] is (report["tumour_cut_slices"] > 0)


def test_field_of_view_rule_unit(phantom):
    from voxsurv.inference.report_fields import field_of_view, tumour_extent_mm

    extent = tumour_extent_mm(sitk.ReadImage(phantom[1]))
    m = sitk.GetArrayFromImage(sitk.ReadImage(phantom[1])) > 0
    k = extent["at_input_slice"]
    ys, xs = np.nonzero(m[k])
    assert extent["max_inplane_extent_mm"] == pytest.approx(max(np.ptp(xs) + 1, np.ptp(ys) + 1) * 0.977, abs=1.0)
    cut = field_of_view(extent, 64.0, 14, 16)  # the old fixed 64 mm crop
    assert cut["tumour_exceeds_field_of_view"] is True
    assert "wider than the network's 64 mm field of view: on 14 of 16 slices" in cut["note"]
    held = field_of_view(extent, 125.0, 0, 16)
    assert held["tumour_exceeds_field_of_view"] is False and held["note"] == ""


def test_one_version_scheme():
    import voxsurv

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["metadata"]["version"] == "attr: voxsurv.__version__"
    for meta in sorted(REPO.glob("bundles/*/configs/metadata.json")):
        m = json.loads(meta.read_text())
        assert m["version"] == voxsurv.__version__, meta  # one release number for package and bundles
        assert m["required_packages_version"]["voxsurv"] == voxsurv.__version__, meta


def test_report_model_version_is_release_plus_weights_hash(run, narrow_bundle):
    import voxsurv

    report, _, _ = run
    sha = report["model"]["weights_sha256"]
    bundle_version = json.loads((narrow_bundle / "configs" / "metadata.json").read_text())["version"]
    assert report["model"]["version"] == f"{bundle_version}+{sha[:12]}"
    assert report["voxsurv_version"] == voxsurv.__version__ == bundle_version


def test_overlay_shows_exactly_the_listed_slices_with_orientation_version_date_and_research_use(run):
    from PIL import Image

    report, folder, _ = run
    png = Image.open(folder / "overlay.png")
    listed = report["overlay_input_slices"]
    assert png.info["voxsurv:slices"] == ",".join(map(str, listed))
    assert 1 <= len(listed) <= 12 and listed == report["overlay"]["slices"]
    assert report["n_slices"] > len(listed) or len(listed) == len(set(listed))
    footer = png.info["Description"]
    assert report["model"]["version"] in footer and report["created_utc"][:10] in footer
    assert "Research use only" in footer
    assert png.info["voxsurv:orientation"] == "right=L,left=R,bottom=P,top=A"  # LPS phantom, radiological view


def test_orientation_letters_follow_the_direction_cosines():
    from voxsurv.inference.overlay import choose_panels, orientation_letters

    img = sitk.Image(4, 4, 4, sitk.sitkInt16)
    assert orientation_letters(img) == {"right": "L", "left": "R", "bottom": "P", "top": "A"}
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS-stored volume
    assert orientation_letters(img) == {"right": "R", "left": "L", "bottom": "A", "top": "P"}
    assert choose_panels(list(range(16))) == [0, 1, 3, 4, 5, 7, 8, 10, 11, 12, 14, 15]
    assert choose_panels([3, 4]) == [3, 4]
