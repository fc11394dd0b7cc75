"""Shared pieces for operators whose input is an image run through an image processor.

The processor is the class transformers.pipeline() loads in the same environment: the
torchvision backend where torchvision imports, the Pillow one (`*ImageProcessorPil`) where it
does not (operators/loading.py).

Preprocess (CPU) decodes the image and lets the model's own image processor resize it, with
rescaling and normalization switched off: the compact per-row feature is the resized uint8
pixels (CHW) plus the original (height, width). Forward (device) stacks the uint8 pixels,
moves them to the device and there turns them into floats by a table of what the processor's
own rescale and normalize methods make of each of the 256 levels (`pixel_table`), so the
values are the processor's bit for bit. The operator checks that on its first image against
the processor's complete call; where they differ (a processor that resizes after rescaling,
or one this split does not fit), every row carries the processor's own float pixels instead
(`pixel_values`), four times larger but the processor's answer. Where that whole processor
call is one fixed-size resize (ViT's), the operator makes that one call itself
(operators/direct_resize.py), after checking on its first image that the pixels are the same.

Micro-batches hold images of one exact shape by default, so each image gets the answer it
gets alone. Where the model reads a pixel mask (DETR), `max_padding` > 0 opts in to padded
buckets: images of similar aspect ratio share a micro-batch, padded bottom/right with zeros
after normalization and masked, as the processor's own batched call pads them. Padding still
reaches the backbone's convolutions at the padded edge, so answers move (ARCHITECTURE.md).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import numpy as np
from pydantic import Field

from operators.base import Operator, OperatorOptions, server_option
from operators.batching import padded_batches, padded_canvas, shape_batches
from operators.decoding.image import DEFAULT_MAX_PIXELS, decode_image
from operators.direct_resize import DirectResize

logger = logging.getLogger(__name__)


class ImageOptions(OperatorOptions):
    max_image_pixels: int = server_option(
        DEFAULT_MAX_PIXELS,
        ge=1,
        description="Images whose header claims more pixels (width x height) are refused per row "
        "before any pixel is decoded; guards against decompression bombs.",
    )
    max_batch_pixels: int = server_option(
        1 << 24,
        ge=1,
        description="Most pixels in one forward micro-batch, padding included (rows x the "
        "batch's largest height x largest width); a single larger image still runs alone. "
        "Bounds device memory for large inputs.",
    )
    max_padding: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="Opt-in padded buckets for models that read a pixel mask (DETR): images of "
        "different sizes share a micro-batch when each one's padding is at most this share of the "
        "batch's canvas. Fewer, larger micro-batches, but padding moves the backbone's features at "
        "the padded edge, so answers differ from the image-alone answer (15 real photos with DETR at "
        "800/1333: 0.25 left 4 of them their image-alone objects, 0.1 left 10). 0, the default: only images of "
        "one exact size share a micro-batch, each with its image-alone answer.",
    )


# Mixed-size micro-batches pad to a canvas that is a multiple of this: the output stride of
# DETR-style backbones (32; 16 for dilated ones divides it), so that the model's downsampled
# pixel mask matches the image-alone feature map (operators/batching.py padded_canvas).
PAD_MULTIPLE = 32

# Model types whose forward takes a `pixel_mask` and never reads it (transformers 5.24: the
# MaskFormer, Mask2Former and OneFormer models fill in a default mask and pass it nowhere), so
# padding reaches their backbone and pixel decoder. Measured on Mask2Former with the
# processor's 800/1333 default: padded rows changed labels and up to 76% of mask pixels.
# They batch by exact shape; their published checkpoints resize to one fixed size anyway.
PIXEL_MASK_UNREAD = frozenset({"maskformer", "mask2former", "oneformer"})


def pixel_table(processor: Any, channels: int = 3) -> np.ndarray:
    """A (channels, 256) float32 table: the value the processor makes of each uint8 level.

    Built by running the processor's own rescale and normalize methods (its backend's, or its
    class's overrides) on the 256 levels, as its `_preprocess` runs them on an image: both
    are per channel and per pixel, so gathering from the table on the device gives the
    processor's values bit for bit, where recomputing them in torch could round differently
    in the last place. The operator checks the result against the processor's complete call
    on its first image.
    """
    do_rescale = bool(getattr(processor, "do_rescale", False))
    do_normalize = bool(getattr(processor, "do_normalize", False))
    rescale_factor = float(getattr(processor, "rescale_factor", 1 / 255))
    mean = std = None
    if do_normalize:
        mean = tuple(np.broadcast_to(np.asarray(processor.image_mean, dtype=np.float64), (channels,)).tolist())
        std = tuple(np.broadcast_to(np.asarray(processor.image_std, dtype=np.float64), (channels,)).tolist())
    levels = np.repeat(np.arange(256, dtype=np.uint8)[None, None, :], channels, axis=0)  # (C, 1, 256)
    if getattr(processor, "backend", None) == "torchvision":
        import torch

        values = processor.rescale_and_normalize(
            torch.from_numpy(levels), do_rescale, rescale_factor, do_normalize, mean, std
        )
        table = values.to(torch.float32).numpy()
    else:  # the Pillow backend's steps, in PilBackend._preprocess's order
        table = levels
        if do_rescale:
            table = processor.rescale(table, rescale_factor)
        if do_normalize:
            table = processor.normalize(table, mean, std)
    return np.ascontiguousarray(np.asarray(table, dtype=np.float32)[:, 0, :])


def import_timm():
    """timm, imported (a function, so tests can stand in for a missing timm)."""
    import timm

    return timm


def timm_model_name(config) -> str | None:
    """The timm model that `config` builds through timm (a timm backbone, as in DETR's
    published configs, or a timm image classifier), else None."""
    for part in (config, getattr(config, "backbone_config", None)):
        model_type = getattr(part, "model_type", None)
        if model_type in ("timm_backbone", "timm_wrapper"):
            return getattr(part, "backbone", None) or getattr(part, "architecture", None) or model_type
    return None


def check_timm_importable(config, model_id: str) -> None:
    """A model built with timm needs timm importable; say so when its config is read, not
    on every row. timm imports torchvision, so a torchvision built for another torch fails
    here too."""
    name = timm_model_name(config)
    if name is None:
        return
    try:
        import_timm()
    except Exception as e:  # ImportError, or RuntimeError/AttributeError from a mismatched torchvision
        import torch

        raise ImportError(
            f"model {model_id!r} builds {name!r} with timm, which cannot be imported ({type(e).__name__}: {e}); "
            f"install it with pip install 'taskray[timm]', with a torchvision built for the installed "
            f"torch {torch.__version__}"
        ) from e


class ImageOperator(Operator):
    """Decode `image`, resize with the model's processor (uint8), normalize on the device."""

    modality = "image"
    input_roles = ("image",)
    processor_kind = "image_processor"
    Options = ImageOptions

    _config = None
    _table = None
    _direct: DirectResize | bool | None = None  # None: not decided yet; False: no shortcut
    # None: not decided yet; True: uint8 pixels normalized on the device; False: the
    # processor's own float pixels (its normalization did not fit the split)
    _deferred: bool | None = None

    def check_config(self) -> None:
        super().check_config()
        check_timm_importable(self.model_config, self.model_id)

    # ------------------------------------------------------------------ CPU side

    def check_row(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"image": decode_image(row["image"], self.options.max_image_pixels)}

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # One image per processor call: a list call would pad every image to the largest.
        return [self.image_features(row["image"]) for row in rows]

    def image_features(self, image) -> dict[str, Any]:
        if self.defers_normalization(image):
            direct = self.direct_resize(image)
            features = {"pixels": direct(image)} if direct is not None else self.processor_features(image)
        else:
            features = self.processed_features(image)
        features["original_size"] = (int(image.height), int(image.width))
        return features

    def defers_normalization(self, image) -> bool:
        """Whether uint8 pixels normalized by `pixel_table` give the processor's own values,
        decided on the first image by comparing with the processor's complete call. The
        decoding threads of one actor may each check their own first image; a mismatch on any
        of them is final."""
        if self._deferred is None:
            try:
                features = self.processor_features(image)
            except RuntimeError as e:  # not uint8 without rescaling: this processor cannot split
                logger.warning("%s: %s; the processor normalizes every image on the CPU", self.model_id, e)
                same = False
            else:
                want = self.processed_features(image)
                got = normalized_pixels(features, pixel_table(self.processor, features["pixels"].shape[0]))
                same = got.shape == want["pixel_values"].shape and np.array_equal(got, want["pixel_values"])
                if not same:
                    logger.warning(
                        "%s: %s normalized other values than its uint8 pixels through the table; the "
                        "processor normalizes every image on the CPU",
                        self.model_id,
                        type(self.processor).__name__,
                    )
            if not same:
                self._deferred = False
            elif self._deferred is None:
                self._deferred = True
        return bool(self._deferred)

    def direct_resize(self, image) -> DirectResize | None:
        """The shortcut for this processor, decided on the first image by comparing pixels.

        The decoding threads of one actor may each check their own first image; a mismatch
        on any of them is final."""
        if self._direct is None:
            direct = DirectResize.matching(self.processor)
            if direct is not None and not np.array_equal(direct(image), self.processor_features(image)["pixels"]):
                logger.warning(
                    "%s: a plain %s resize gave other pixels than %s; using the processor for every image",
                    self.model_id,
                    direct.backend,
                    type(self.processor).__name__,
                )
                direct = None
            if direct is None:
                self._direct = False
            elif self._direct is None:
                self._direct = direct
        return self._direct or None

    def processor_features(self, image) -> dict[str, Any]:
        """`pixels` (uint8 CHW) from the processor, and `pixel_mask` where it padded."""
        out = self.processor(images=[image], do_rescale=False, do_normalize=False)
        pixels = as_numpy(out["pixel_values"][0])
        if pixels.dtype != np.uint8 or pixels.ndim != 3:
            raise RuntimeError(
                f"{type(self.processor).__name__} gave {pixels.dtype} pixels of shape {pixels.shape} "
                "without rescaling; expected uint8 CHW"
            )
        return {"pixels": pixels, **own_pixel_mask(out)}

    def processed_features(self, image) -> dict[str, Any]:
        """`pixel_values` (float32 CHW) from the processor's complete call, as pipeline() runs
        it, and `pixel_mask` where it padded."""
        out = self.processor(images=[image])
        return {"pixel_values": as_numpy(out["pixel_values"][0]).astype(np.float32, copy=False), **own_pixel_mask(out)}

    # ------------------------------------------------------------------ device side

    @property
    def pads_with_mask(self) -> bool:
        """Whether images of different sizes may share a micro-batch: the processor pads a
        batch with a `pixel_mask` and the model's forward reads one (its signature takes it,
        and it is not one of the families known to ignore it)."""
        if "pixel_mask" not in (getattr(self.processor, "model_input_names", None) or ()):
            return False
        return self._model_reads_pixel_mask()

    def _model_reads_pixel_mask(self) -> bool:
        if self.model_config.model_type in PIXEL_MASK_UNREAD:
            return False
        return "pixel_mask" in inspect.signature(self.model.forward).parameters

    def plan_batches(self, features: list[dict[str, Any]]) -> list[list[int]]:
        """Micro-batches bounded by rows and by pixels: one exact tensor shape per batch, or,
        where `max_padding` opts in and the model reads a pixel mask, images of similar aspect
        ratio padded together. Rows whose processor already padded them (their own
        `pixel_mask`) keep to their shape."""
        shapes = [pixel_shape(f) for f in features]
        own_mask = [f.get("pixel_mask") is not None for f in features]
        max_rows, max_pixels = self.options.max_batch_rows, self.options.max_batch_pixels
        if self.options.max_padding > 0 and self.pads_with_mask:
            groups: dict[int, list[int]] = {}
            for i, shape in enumerate(shapes):
                if not own_mask[i]:
                    groups.setdefault(shape[0], []).append(i)  # by channel count
            batches = [
                [members[j] for j in batch]
                for members in groups.values()
                for batch in padded_batches(
                    [shapes[i][1:] for i in members], max_pixels, max_rows, self.options.max_padding, PAD_MULTIPLE
                )
            ]
            exact = [i for i in range(len(features)) if own_mask[i]]
        else:
            batches, exact = [], list(range(len(features)))
        for batch in shape_batches([(shapes[i], own_mask[i]) for i in exact], max_rows):
            _, height, width = shapes[exact[batch[0]]]
            rows = max(1, max_pixels // max(height * width, 1))
            batches.extend([exact[j] for j in batch[start : start + rows]] for start in range(0, len(batch), rows))
        return batches

    def model_inputs(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        """`pixel_values` (and `pixel_mask` where the processor or the micro-batch padded) on
        the device. Rows smaller than the batch are padded bottom/right to its largest height
        and width with 0 in normalized pixel space and masked, as the processors' pad() does."""
        import torch

        # a column store fills a key missing in some rows with None, so test the value
        deferred = features[0].get("pixels") is not None
        # asarray: features that went through Arrow may come back as nested lists
        if deferred:
            arrays = [np.asarray(f["pixels"], dtype=np.uint8) for f in features]
        else:
            arrays = [np.asarray(f["pixel_values"], dtype=np.float32) for f in features]
        channels = arrays[0].shape[0]
        height, width = padded_canvas([a.shape[1:] for a in arrays], PAD_MULTIPLE)
        padded = any(a.shape[1:] != (height, width) for a in arrays)
        own_masks = any(f.get("pixel_mask") is not None for f in features)
        if padded:
            stacked = np.zeros((len(arrays), channels, height, width), arrays[0].dtype)
            for row, a in enumerate(arrays):
                stacked[row, :, : a.shape[1], : a.shape[2]] = a
        else:
            stacked = np.stack(arrays)
        pixels = self.to_device(stacked)
        if deferred:
            if self._table is None or self._table.shape[0] != channels or self._table.device != pixels.device:
                self._table = torch.from_numpy(pixel_table(self.processor, channels)).to(pixels.device)
            offsets = torch.arange(channels, device=pixels.device).view(1, channels, 1, 1) * 256
            pixels = self._table.flatten()[pixels.long() + offsets]
        inputs = {"pixel_values": pixels.to(self.dtype)}
        if padded or own_masks:
            masks = np.zeros((len(arrays), height, width), np.int64)
            for row, (a, f) in enumerate(zip(arrays, features)):
                own = f.get("pixel_mask")
                masks[row, : a.shape[1], : a.shape[2]] = 1 if own is None else np.asarray(own, np.int64)
            mask = self.to_device(masks)
            # normalized 0 where padded, as the processor pads after normalizing
            inputs["pixel_values"] = inputs["pixel_values"].masked_fill(~mask.bool()[:, None], 0)
            inputs["pixel_mask"] = mask
        return inputs

    @staticmethod
    def valid_region(output, features: dict[str, Any], canvas: tuple[int, int]):
        """One row's spatial output (..., h, w) over a padded canvas, cut to the part that
        covers the row's own pixels: the output the row would give alone is that size."""
        height, width = pixel_shape(features)[1:]
        if (height, width) == tuple(canvas):
            return output
        rows = -(-output.shape[-2] * height // canvas[0])
        cols = -(-output.shape[-1] * width // canvas[1])
        return output[..., :rows, :cols]


def as_numpy(value) -> np.ndarray:
    """A processor output (a numpy array from the Pillow backend, a CPU tensor from
    torchvision's) as a numpy array."""
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def own_pixel_mask(out) -> dict[str, Any]:
    """{"pixel_mask": uint8 HxW} where the processor padded a single image (only one with a
    fixed pad_size does), else {}."""
    mask = out.get("pixel_mask")
    if mask is None:
        return {}
    mask = as_numpy(mask[0])
    return {} if np.all(mask == 1) else {"pixel_mask": mask.astype(np.uint8)}


def pixel_shape(features: dict[str, Any]) -> tuple[int, ...]:
    """(channels, height, width) of a row's pixels, uint8 or the processor's floats."""
    pixels = features.get("pixels")
    return tuple(np.shape(pixels if pixels is not None else features["pixel_values"]))


def normalized_pixels(features: dict[str, Any], table: np.ndarray) -> np.ndarray:
    """What model_inputs makes of one row's uint8 pixels, on the CPU: the table's values, 0
    where the processor's own mask says it padded."""
    pixels = np.asarray(features["pixels"])
    values = np.take_along_axis(table, pixels.reshape(pixels.shape[0], -1).astype(np.int64), axis=1)
    values = values.reshape(pixels.shape)
    mask = features.get("pixel_mask")
    if mask is not None:
        values = np.where(np.asarray(mask)[None] == 0, np.float32(0), values)
    return values
