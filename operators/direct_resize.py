"""One PIL resize in place of a whole image-processor call, where the two give the same pixels.

A PIL-backend processor that resizes to a fixed (height, width), with no crop or pad, turns an
RGB PIL image into `np.array(image.resize((width, height), resample))` in CHW order, once
rescaling and normalization are off (they run on the device, see vision_inputs). Going
through the processor adds kwarg validation, structure checks and two numpy/PIL round trips:
0.6 ms of CPU per image, most of it holding the GIL, on top of 3 ms to decode a 100-1000 px
JPEG/PNG. The forward actor decodes in three threads, which share that GIL: 461-469 images/s
through the processor against 553-576 directly (benchmarks/RESULTS.md, night table).

`DirectResize.matching(processor)` only accepts processors whose preprocessing steps are
PilBackend's own, unchanged, and the operator compares the two paths on its first image
before trusting the shortcut, so a transformers release that changes those steps falls back
to the processor instead of changing results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The methods PilBackend runs for `processor(images=[pil_image])`; a subclass that overrides
# any of them may do something else, so it keeps the processor path.
_PIL_STEPS = (
    "__call__",
    "preprocess",
    "_preprocess_image_like_inputs",
    "_prepare_image_like_inputs",
    "_prepare_images_structure",
    "process_image",
    "convert_to_rgb",
    "resize",
    "_preprocess",
)


@dataclass(frozen=True)
class DirectResize:
    """Resize an RGB PIL image to `size` (width, height) with `resample`; uint8 CHW out."""

    size: tuple[int, int]
    resample: int

    @classmethod
    def matching(cls, processor: Any) -> "DirectResize | None":
        """The shortcut equal to `processor` on RGB PIL images, or None if there is none."""
        try:
            from transformers.image_processing_backends import PilBackend
            from transformers.image_utils import PILImageResampling
        except ImportError:  # another transformers layout: keep the processor
            return None
        if not isinstance(processor, PilBackend):
            return None
        kind = type(processor)
        if any(getattr(kind, step, None) is not getattr(PilBackend, step, None) for step in _PIL_STEPS):
            return None
        if not getattr(processor, "do_resize", False):
            return None
        if getattr(processor, "do_center_crop", False) or getattr(processor, "do_pad", False):
            return None
        size = getattr(processor, "size", None)
        # PilBackend.resize tries shortest/longest edge and max sizes before (height, width)
        if size is None or any(
            getattr(size, key, None) for key in ("shortest_edge", "longest_edge", "max_height", "max_width")
        ):
            return None
        height, width = getattr(size, "height", None), getattr(size, "width", None)
        if not (height and width):
            return None
        resample = getattr(processor, "resample", None)
        if resample is None:
            resample = PILImageResampling.BILINEAR  # PilBackend.resize's own default
        elif not isinstance(resample, int):  # a torchvision mode the processor would remap
            return None
        return cls(size=(int(width), int(height)), resample=int(resample))

    def __call__(self, image) -> np.ndarray:
        resized = np.asarray(image.resize(self.size, self.resample))
        return np.ascontiguousarray(resized.transpose(2, 0, 1))
