"""Channel stacking: CT (1 channel) + radiomics maps (F channels) -> one network input."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

__all__ = ["StackChannels", "StackChannelsd", "StackChannelsD", "StackChannelsDict"]


class StackChannels(Transform):
    """Concatenate channel-first arrays of the same spatial shape along the channel axis, in the
    order given; float32 out, metadata (affine, patient id, slice index) of the first kept."""

    backend = [torch.Tensor.__name__]

    def __call__(self, imgs: Sequence[NdarrayOrTensor]) -> NdarrayOrTensor:
        if not imgs:
            raise ValueError("StackChannels needs at least one array")
        tensors = [convert_to_tensor(x, track_meta=get_track_meta(), dtype=torch.float32) for x in imgs]
        shapes = {tuple(t.shape[1:]) for t in tensors}
        if len(shapes) != 1:
            raise ValueError(f"cannot stack channels: spatial shapes differ {[tuple(t.shape) for t in tensors]}")
        return torch.cat(tensors, dim=0)


class StackChannelsd(MapTransform):
    """Dictionary twin of :class:`StackChannels`: ``d[output_key] = cat([d[k] for k in keys])``.

    Args:
        keys: keys to stack, in channel order (e.g. ``["image", "maps"]``).
        output_key: where the stacked array goes.
        delete_keys: remove the source keys after stacking.
        allow_missing_keys: stack only the keys present.
    """

    backend = StackChannels.backend

    def __init__(self, keys: KeysCollection, output_key: str = "input", delete_keys: bool = False,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.output_key = output_key
        self.delete_keys = delete_keys
        self.stacker = StackChannels()

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        present = list(self.key_iterator(d))
        d[self.output_key] = self.stacker([d[k] for k in present])
        if self.delete_keys:
            for k in present:
                if k != self.output_key:
                    del d[k]
        return d


StackChannelsD = StackChannelsDict = StackChannelsd
