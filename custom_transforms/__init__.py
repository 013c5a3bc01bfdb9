"""voxsurv's MONAI transforms (array + dictionary twins) and THE preprocessing chain built from them
(custom_transforms.pipeline: volume_preprocessing, stack_preprocessing, patient_preprocessing):
resampling to 1 x 1 x 5 mm, tumour descriptors, voxel radiomics maps (cached), their cohort
normalisation, the per-patient tumour-slice stack and the random choice of its slices."""

from custom_transforms.descriptors import (  # noqa: F401
    DESCRIPTOR_NAMES, TumourDescriptors, TumourDescriptorsd, TumourDescriptorsD, TumourDescriptorsDict)
from custom_transforms.patient import PatientIdd, PatientIdD, PatientIdDict  # noqa: F401
from custom_transforms.spatial import (  # noqa: F401
    PAPER_PIXDIM, ResampleToSpacing, ResampleToSpacingd, ResampleToSpacingD, ResampleToSpacingDict)
from custom_transforms.maps import (  # noqa: E402,F401  (voxel radiomics maps)
    NormaliseMaps, NormaliseMapsd, NormaliseMapsD, NormaliseMapsDict, VoxelRadiomicsMaps,
    VoxelRadiomicsMapsd, VoxelRadiomicsMapsD, VoxelRadiomicsMapsDict)
from custom_transforms.tumour_stack import (  # noqa: F401
    RandTumourSlices, RandTumourSlicesd, RandTumourSlicesD, RandTumourSlicesDict, TumourStack, TumourStackd,
    TumourStackD, TumourStackDict)
from custom_transforms.pipeline import (  # noqa: E402,F401  (the one preprocessing chain)
    patient_preprocessing, stack_preprocessing, volume_preprocessing, window_bounds)
