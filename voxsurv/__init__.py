"""voxsurv: survival prediction from CT + tumour contour with voxel-level radiomics maps and a
Vision-Mamba network, packaged as MONAI bundles.

Importing this package is cheap: heavy modules (torch, SimpleITK, PyRadiomics) load on use.
"""

__version__ = "0.2.0"  # one release number for the package and its shipped bundles (configs/metadata.json)
