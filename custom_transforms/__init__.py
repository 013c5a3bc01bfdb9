from custom_transforms.maps import (  # noqa: E402,F401  (voxel radiomics maps)
    NormaliseMaps, NormaliseMapsd, NormaliseMapsD, NormaliseMapsDict, VoxelRadiomicsMaps,
    VoxelRadiomicsMapsd, VoxelRadiomicsMapsD, VoxelRadiomicsMapsDict)
