"""Pillow drawing for the report: previews, detection boxes, segmentation masks, depth colours.

Every helper takes and returns PIL images; the pixels are Pillow's (ImageDraw, paste through
a mask, a palette image), never hand-written loops.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, Iterable

from pipelines.report.limits import PREVIEW_MAX_SIDE, PREVIEW_MIN_SIDE

if TYPE_CHECKING:
    from PIL import Image

# Tableau's 10 colours (matplotlib's default cycle): distinct, and readable behind white text.
LABEL_COLOURS = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)
# Anchors of matplotlib's viridis (perceptually uniform, readable in greyscale and by most
# colour-blind readers); the 256 colours between are interpolated linearly.
VIRIDIS_ANCHORS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
MASK_ALPHA = 140  # of 255: the photo stays visible under a mask


def label_colour(label: Any) -> tuple[int, int, int]:
    """A stable colour per label, the same in every drawing and chart of a report."""
    digest = hashlib.blake2b(str(label).encode("utf-8"), digest_size=2).digest()
    return LABEL_COLOURS[int.from_bytes(digest, "big") % len(LABEL_COLOURS)]


class Palette:
    """Label colours for one task's section: the first labels asked for (pass the most
    frequent first) get distinct colours of LABEL_COLOURS; any others fall back to
    label_colour's hash, which may repeat a colour."""

    def __init__(self, labels: Iterable[Any] = ()):
        self._assigned: dict[str, tuple[int, int, int]] = {}
        for label in labels:
            self(label)

    def __call__(self, label: Any) -> tuple[int, int, int]:
        key = str(label)
        if key not in self._assigned:
            n = len(self._assigned)
            self._assigned[key] = LABEL_COLOURS[n] if n < len(LABEL_COLOURS) else label_colour(key)
        return self._assigned[key]


def css_colour(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def preview_scale(width: int, height: int) -> float:
    """The factor that brings the long side into [PREVIEW_MIN_SIDE, PREVIEW_MAX_SIDE]."""
    long_side = max(width, height)
    if long_side > PREVIEW_MAX_SIDE:
        return PREVIEW_MAX_SIDE / long_side
    if long_side < PREVIEW_MIN_SIDE:
        return PREVIEW_MIN_SIDE / long_side
    return 1.0


def fit_preview(image: "Image.Image") -> tuple["Image.Image", float]:
    """The image at preview size (RGB) and the factor applied to its coordinates."""
    from PIL import Image

    scale = preview_scale(image.width, image.height)
    image = image.convert("RGB")
    if scale == 1.0:
        return image, 1.0
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC), scale


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def draw_boxes(
    image: "Image.Image", objects: list[dict[str, Any]], scale: float = 1.0, colours: Callable[[Any], tuple[int, int, int]] = label_colour
) -> "Image.Image":
    """A copy of `image` with each object's box (`{xmin, ymin, xmax, ymax}` in source pixels,
    times `scale`) outlined in its label's colour and captioned `label score`."""
    from PIL import ImageDraw

    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    font = _font(max(10, round(min(out.size) / 24)))
    width = max(1, round(min(out.size) / 160))
    for obj in objects:
        box = obj.get("box") or {}
        try:
            x0, y0, x1, y1 = (float(box[k]) * scale for k in ("xmin", "ymin", "xmax", "ymax"))
        except (KeyError, TypeError, ValueError):  # a malformed box is left out, not drawn wrong
            continue
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        colour = colours(obj.get("label"))
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        caption = _caption(obj.get("label"), obj.get("score"))
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font)
        tw, th = right - left + 4, bottom - top + 4
        ty = y0 - th if y0 - th >= 0 else y0  # above the box, or inside it at the top edge
        draw.rectangle((x0, ty, x0 + tw, ty + th), fill=colour)
        draw.text((x0 + 2 - left, ty + 2 - top), caption, fill=(255, 255, 255), font=font)
    return out


def overlay_masks(
    image: "Image.Image", segments: list[tuple[Any, "Image.Image"]], colours: Callable[[Any], tuple[int, int, int]] = label_colour
) -> "Image.Image":
    """A copy of `image` with each (label, mask) pasted over it in the label's colour, half
    transparent, and the label written at the top left of the mask's extent. Masks are mode
    "L" images (non-zero inside) of any size; they are stretched to the image's size."""
    from PIL import Image, ImageDraw

    out = image.convert("RGB")
    font = _font(max(10, round(min(out.size) / 24)))
    captions = []
    for label, mask in segments:
        mask = mask.convert("L")
        if mask.size != out.size:
            mask = mask.resize(out.size, Image.Resampling.NEAREST)
        alpha = mask.point(lambda v: MASK_ALPHA if v else 0)
        out.paste(Image.new("RGB", out.size, colours(label)), (0, 0), alpha)
        box = mask.getbbox()
        if box is not None:
            captions.append((box[:2], str(label), colours(label)))
    draw = ImageDraw.Draw(out)
    for (x, y), text, colour in captions:  # after all masks, so no mask covers a caption
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        draw.rectangle((x, y, x + right - left + 4, y + bottom - top + 4), fill=colour)
        draw.text((x + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)
    return out


def depth_palette() -> list[int]:
    """The 256-colour viridis palette, flat [r, g, b, r, g, b, ...] as Image.putpalette takes it."""
    import numpy as np

    anchors = np.asarray(VIRIDIS_ANCHORS, dtype=np.float64)
    at = np.linspace(0.0, 1.0, len(anchors))
    levels = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(levels, at, anchors[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=1)).astype(np.uint8).ravel().tolist()


def colour_depth(depth: "Image.Image") -> "Image.Image":
    """A depth map (16-bit "I;16"/"I" or 8-bit "L", low to high) in viridis colours (RGB):
    its 8-bit levels become the indices of a palette image."""
    import numpy as np
    from PIL import Image

    values = np.asarray(depth)
    if values.dtype != np.uint8:
        # The depth column is min/max normalized to the full 16-bit range; its top byte is
        # the 8-bit level pipeline()'s own depth image has (to within one).
        values = (values.astype(np.uint32) >> 8).astype(np.uint8)
    indexed = Image.frombytes("P", (values.shape[1], values.shape[0]), np.ascontiguousarray(values).tobytes())
    indexed.putpalette(depth_palette())
    return indexed.convert("RGB")


def blank_canvas(width: int, height: int) -> "Image.Image":
    """A neutral grey image to draw results on when the source image is not in the output."""
    from PIL import Image

    return Image.new("RGB", (max(1, width), max(1, height)), (200, 200, 200))


def _caption(label: Any, score: Any) -> str:
    text = str(label)
    if isinstance(score, (int, float)):
        text += f" {score:.2f}"
    return text
