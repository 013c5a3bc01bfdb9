"""voxsurv: survival prediction from CT + tumour contour with voxel-level radiomics maps and a
Vision-Mamba network, packaged as MONAI bundles.

Importing this package is cheap: heavy modules (torch, SimpleITK, PyRadiomics) load on use.
"""

__version__ = "0.3.0"  # one release number for the package and its shipped bundles (configs/metadata.json)

# An import path from before the layers of issue 14 (`survival`, `voxelmaps`, voxsurv's old errors module,
# ...) fails with a message naming its new path; imports that work are not touched (voxsurv.core.renamed).
from voxsurv.core import renamed as _renamed  # noqa: E402

_renamed.install()


def __getattr__(name: str):  # only for a missing attribute: an old submodule name gets the moved message
    raise _renamed.missing_attribute(__name__, name)
