"""A restoration prepared before anything is written: the image, the model, the axes layout, the options and every
output block, plus the description that identifies the output's bytes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..checkpoint import Checkpoint, load_checkpoint
from ..device import resolve_device
from ..io import Image, open_image
from ..normalize import Normalization
from ..progress import ProgressFn
from .infer import BlockRestorer
from .intensities import effective_norm
from .layout import Layout, OutputBlock, make_layout, output_blocks
from .options import Options, RestoreOptions, resolve_options
from .plan import plan_blocks


@dataclass
class PreparedRestore:
    """A validated restoration: the image (as opened and in TCZYX order), the checkpoint, the layout, resolved
    options and the planned output blocks. ``dev`` is the local torch device (None when dask workers run it)."""

    image: Image
    canonical: Image
    ckpt: Checkpoint
    layout: Layout
    options: Options
    items: list[OutputBlock]
    device: str
    dev: Any
    sentence: str  # where it runs, for the user
    norm: Normalization | None  # the checkpoint's normalisation, or the input's own with intensities="renormalize"

    def description(self) -> dict[str, Any]:
        """What identifies the output's bytes: input identity, checkpoint hash, normalisation and options."""
        c = self.canonical
        return {
            "input": {
                "source": c.source,
                "token": c.data.name,
                "shape": list(c.shape),
                "dtype": str(c.data.dtype),
                "axes": c.axes,
            },
            "checkpoint": self.ckpt.hash,
            "norm": self.norm.model_dump() if self.norm is not None else None,
            **self.options.job(),
        }

    def run_description(self) -> dict[str, Any]:
        """How this run executes (not fingerprinted): the device and the tiles per model call."""
        where = str(self.dev) if self.dev is not None else self.sentence
        return {"device": where, "batch_size": self.options.batch_size}


def prepare(input: Any, checkpoint: Any, options: RestoreOptions) -> PreparedRestore:
    """Open the input and checkpoint, check that they fit, resolve options and plan every block (writes nothing)."""
    image = open_image(input, options.axes)
    canonical = image.to_canonical()
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    cfg = ckpt.config
    layout = make_layout(canonical.axes, canonical.shape, cfg.in_channels, cfg.out_channels, cfg.spatial_dims)
    if options.distributed is None:
        dev, sentence = resolve_device(options.device)
        device_type = dev.type
    else:  # the workers may have GPUs this process lacks
        dev, sentence = None, f"on dask workers ({options.distributed}), device {options.device}"
        device_type = "cpu" if options.device == "cpu" else "cuda"
    resolved = resolve_options(
        layout.spatial_shape, options, multiple=cfg.multiple, input_dtype=canonical.data.dtype, device_type=device_type
    )
    o = resolved
    blocks = plan_blocks(layout.spatial_shape, o.chunks, o.tile, o.overlap, o.overlap, cfg.multiple)  # halo = overlap
    items = output_blocks(layout, blocks)
    channel_axis = canonical.axes.index("C") if "C" in canonical.axes else None
    intensities = "renormalize" if ckpt.per_input and options.intensities == "check" else options.intensities
    norm = effective_norm(canonical.data, ckpt.norm, intensities, canonical.intensity_unit, channel_axis)
    if cfg.in_channels == 1 and "C" in canonical.axes and canonical.shape[canonical.axes.index("C")] > 1:
        sentence += f"; each of the {canonical.shape[canonical.axes.index('C')]} channels restored on its own"
    return PreparedRestore(image, canonical, ckpt, layout, resolved, items, options.device, dev, sentence, norm)


def make_restorer(
    ckpt: Checkpoint, norm: Normalization | None, device: Any, options: Options, progress: ProgressFn | None = None
) -> BlockRestorer:
    """The :class:`~napari_skd.restoration.infer.BlockRestorer` of a job on ``device``: one recipe for the local
    runner and every dask worker, so a block's bytes do not depend on where it ran."""
    return BlockRestorer(ckpt.model, norm, device, options, progress=progress)
