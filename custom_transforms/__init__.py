"""voxsurv's MONAI transforms (array + dictionary twins): HU window (+ z-score), resampling to
1 x 1 x 5 mm, tumour-slice selection, channel stacking, and the voxel radiomics maps."""

from custom_transforms.channels import StackChannels, StackChannelsd, StackChannelsD, StackChannelsDict  # noqa: F401
from custom_transforms.intensity import (  # noqa: F401
    HUWindow, HUWindowd, HUWindowD, HUWindowDict, HUWindowZScore, HUWindowZScored, HUWindowZScoreD,
    HUWindowZScoreDict, window_bounds)
from custom_transforms.slices import (  # noqa: F401
    TumourSlices, TumourSlicesd, TumourSlicesD, TumourSlicesDict, tumour_slice_indices)
from custom_transforms.spatial import (  # noqa: F401
    PAPER_PIXDIM, ResampleToSpacing, ResampleToSpacingd, ResampleToSpacingD, ResampleToSpacingDict)
from custom_transforms.maps import (  # noqa: E402,F401  (voxel radiomics maps)
    NormaliseMaps, NormaliseMapsd, NormaliseMapsD, NormaliseMapsDict, VoxelRadiomicsMaps,
    VoxelRadiomicsMapsd, VoxelRadiomicsMapsD, VoxelRadiomicsMapsDict)
