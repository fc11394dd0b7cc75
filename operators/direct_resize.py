"""One resize call in place of a whole image-processor call, where the two give the same pixels.

A processor that resizes to a fixed (height, width), with no crop or pad, turns an RGB PIL
image into its resized uint8 pixels in CHW order once rescaling and normalization are off
(they run on the device, see vision_inputs). Both of transformers' backends reduce to one call
there: the Pillow backend (`*ImageProcessorPil`) to `image.resize((width, height), resample)`,
the torchvision backend (the default `*ImageProcessor` when torchvision imports) to
`torchvision.transforms.v2.functional.resize(tensor, (height, width), interpolation,
antialias=True)`. Going through the processor adds kwarg validation, structure checks and
conversions: 0.6 ms of CPU per image on the Pillow backend, and on torchvision's 1.1 ms of the
1.7 ms a 640 x 480 picture to 224 px took on one thread (the direct call: 0.6 ms), on top of
3 ms to decode a 100-1000 px JPEG/PNG. The forward actor decodes in three threads, which share the GIL.

`DirectResize.matching(processor)` only accepts processors whose preprocessing steps are their
backend's own, unchanged, and the operator compares the two paths on its first image before
trusting the shortcut, so a transformers release that changes those steps falls back to the
processor instead of changing results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# The methods a backend runs for `processor(images=[pil_image])`; a subclass that overrides
# any of them may do something else, so it keeps the processor path.
_BACKEND_STEPS = (
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


def _backend_base(processor: Any):
    """(name, base class) of the transformers backend `processor` is built on, else None."""
    try:
        from transformers.image_processing_backends import PilBackend, TorchvisionBackend
    except ImportError:  # another transformers layout: keep the processor
        return None
    if isinstance(processor, PilBackend):
        return "pil", PilBackend
    if isinstance(processor, TorchvisionBackend):
        return "torchvision", TorchvisionBackend
    return None


@dataclass(frozen=True)
class DirectResize:
    """Resize an RGB PIL image to `size` (width, height) with `resample`; uint8 CHW out.

    backend "pil": `resample` is a PIL filter. backend "torchvision": `resample` is the
    torchvision InterpolationMode's value, resized with antialias as the backend does."""

    size: tuple[int, int]
    resample: Any
    backend: str = "pil"

    @classmethod
    def matching(cls, processor: Any) -> "DirectResize | None":
        """The shortcut equal to `processor` on RGB PIL images, or None if there is none."""
        found = _backend_base(processor)
        if found is None:
            return None
        backend, base = found
        kind = type(processor)
        if any(getattr(kind, step, None) is not getattr(base, step, None) for step in _BACKEND_STEPS):
            return None
        if not getattr(processor, "do_resize", False):
            return None
        if getattr(processor, "do_center_crop", False) or getattr(processor, "do_pad", False):
            return None
        size = getattr(processor, "size", None)
        # both backends' resize try shortest/longest edge and max sizes before (height, width)
        if size is None or any(
            getattr(size, key, None) for key in ("shortest_edge", "longest_edge", "max_height", "max_width")
        ):
            return None
        height, width = getattr(size, "height", None), getattr(size, "width", None)
        if not (height and width):
            return None
        resample = getattr(processor, "resample", None)
        if backend == "pil":
            from transformers.image_utils import PILImageResampling

            if resample is None:
                resample = PILImageResampling.BILINEAR  # PilBackend.resize's own default
            elif not isinstance(resample, int):  # a torchvision mode the processor would remap
                return None
            return cls(size=(int(width), int(height)), resample=int(resample), backend=backend)
        # TorchvisionBackend.resize: a PIL filter maps through pil_torch_interpolation_mapping
        from torchvision.transforms.v2 import InterpolationMode
        from transformers.image_utils import PILImageResampling, pil_torch_interpolation_mapping

        if resample is None:
            mode = InterpolationMode.BILINEAR
        elif isinstance(resample, (PILImageResampling, int)):
            mode = pil_torch_interpolation_mapping[resample]
        else:
            mode = resample
        if mode == InterpolationMode.LANCZOS:  # the backend falls back by torchvision version
            return None
        return cls(size=(int(width), int(height)), resample=mode.value, backend=backend)

    def __call__(self, image) -> np.ndarray:
        if self.backend == "pil":
            resized = np.asarray(image.resize(self.size, self.resample))
            return np.ascontiguousarray(resized.transpose(2, 0, 1))
        import torch
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvF

        # as TorchvisionBackend.process_image: HWC array, to CHW, contiguous, then resized
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()
        width, height = self.size
        resized = tvF.resize(tensor, [height, width], interpolation=InterpolationMode(self.resample), antialias=True)
        return resized.numpy()
