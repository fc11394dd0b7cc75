"""Media of the report as data URIs: the page embeds everything it shows, so it opens offline
from a single file and makes no request of its own.

Limits (limits.py, stated in `taskray report --help`):

* images: decoded as the operators decode them (EXIF orientation, the same pixel limit), then
  scaled to the preview size (drawing.py); JPEG unless the drawing has few colours, where PNG
  is smaller and sharper;
* audio: at most AUDIO_MAX_SOURCE_SECONDS long to be shown at all; the first
  AUDIO_PREVIEW_SECONDS of it, mono at AUDIO_PREVIEW_RATE Hz, encoded as Ogg Opus;
* anything that does not decode or passes a limit is left out with a note saying why.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from operators.decoding.audio import decode_audio
from operators.decoding.image import DEFAULT_MAX_PIXELS, decode_image
from operators.errors import RowError
from pipelines.report.limits import AUDIO_MAX_SOURCE_SECONDS, AUDIO_PREVIEW_RATE, AUDIO_PREVIEW_SECONDS

if TYPE_CHECKING:
    from PIL import Image

JPEG_QUALITY = 85


@dataclass
class Media:
    """One embedded media item, or the reason it is not shown (uri None)."""

    uri: str | None
    note: str | None = None


def data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def source_image(value: Any) -> tuple["Image.Image | None", str | None]:
    """The input image of a kept column cell (bytes or an HF {bytes, path} struct), or None and
    why not. Decoded exactly as the operators decode it, so result coordinates line up."""
    if value is None:
        return None, "the input image is empty in the output"
    try:
        return decode_image(value, DEFAULT_MAX_PIXELS), None
    except RowError as e:
        return None, f"input image not shown: {e.message}"


def image_uri(image: "Image.Image") -> str:
    """An RGB preview as a data URI: PNG for drawings with few colours (masks on grey, flat
    synthetic images), JPEG for photos."""
    buf = io.BytesIO()
    if image.getcolors(maxcolors=256) is not None:
        image.save(buf, format="PNG", optimize=True)
        return data_uri("image/png", buf.getvalue())
    image.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return data_uri("image/jpeg", buf.getvalue())


def png_image(data: Any, what: str) -> tuple["Image.Image | None", str | None]:
    """A PNG result cell (a mask, a depth map) as a PIL image, or None and why not."""
    from PIL import Image

    if not isinstance(data, (bytes, bytearray, memoryview)) or not data:
        return None, f"no {what} in this row"
    try:
        image = Image.open(io.BytesIO(bytes(data)))
        image.load()
    except Exception as e:  # the cell is untrusted output; any decoding failure is shown, not raised
        return None, f"{what} does not decode: {type(e).__name__}"
    return image, None


def audio_preview(value: Any) -> Media:
    """The first AUDIO_PREVIEW_SECONDS of an audio cell as an Ogg Opus data URI."""
    import soundfile as sf

    if value is None:
        return Media(None, "the input audio is empty in the output")
    try:
        wave = decode_audio(value, AUDIO_PREVIEW_RATE, max_seconds=AUDIO_MAX_SOURCE_SECONDS)
    except RowError as e:
        return Media(None, f"input audio not shown: {e.message}")
    seconds = wave.size / AUDIO_PREVIEW_RATE
    note = None
    if seconds > AUDIO_PREVIEW_SECONDS:
        wave = wave[: int(AUDIO_PREVIEW_SECONDS * AUDIO_PREVIEW_RATE)]
        note = f"first {AUDIO_PREVIEW_SECONDS:.0f} s of {seconds:.1f} s"
    buf = io.BytesIO()
    sf.write(buf, wave.clip(-1.0, 1.0), AUDIO_PREVIEW_RATE, format="OGG", subtype="OPUS")
    return Media(data_uri("audio/ogg", buf.getvalue()), note)
