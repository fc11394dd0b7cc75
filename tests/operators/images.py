"""Deterministic, varied test images (JPEG and PNG, several sizes and modes) and bad inputs.

Content differs per image (gradients, blocks, noise at different frequencies) so that calibrated
tiny heads give different labels; sizes differ so that aspect-ratio-keeping processors
(DETR, Mask2Former, GLPN) produce several tensor shapes in one batch.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np

# (width, height, format, mode)
VARIED_SPECS: tuple[tuple[int, int, str, str], ...] = (
    (64, 48, "JPEG", "RGB"),
    (48, 64, "PNG", "RGB"),
    (70, 40, "PNG", "RGBA"),
    (64, 48, "PNG", "RGB"),  # same size as the first: two rows share a micro-batch
    (33, 57, "JPEG", "RGB"),
    (96, 64, "PNG", "L"),
    (40, 40, "JPEG", "RGB"),
    (80, 50, "JPEG", "L"),
    (64, 48, "JPEG", "RGB"),
)


def pixels(width: int, height: int, seed: int) -> np.ndarray:
    """An HxWx3 uint8 picture: a seed-dependent gradient, a bright block and some noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    freq = 1 + seed % 5
    base = np.stack(
        [
            127 + 120 * np.sin(freq * x / max(width, 1) * np.pi + seed),
            127 + 120 * np.cos(freq * y / max(height, 1) * np.pi + 2 * seed),
            (x + y) * 255 / max(width + height - 2, 1),
        ],
        axis=-1,
    )
    x0, y0 = int(rng.integers(0, max(width // 2, 1))), int(rng.integers(0, max(height // 2, 1)))
    base[y0 : y0 + height // 3 + 1, x0 : x0 + width // 3 + 1] = rng.integers(0, 256, 3)
    base += rng.normal(0, 12, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def encode(array: np.ndarray, fmt: str, mode: str = "RGB", **save_kwargs) -> bytes:
    from PIL import Image

    image = Image.fromarray(array, "RGB").convert(mode)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save_kwargs)
    return buf.getvalue()


def varied_images() -> list[bytes]:
    """Nine encoded images: JPEG and PNG; RGB, RGBA and grayscale; six different sizes."""
    return [encode(pixels(w, h, seed), fmt, mode) for seed, (w, h, fmt, mode) in enumerate(VARIED_SPECS)]


def one_pixel_png() -> bytes:
    return encode(np.full((1, 1, 3), 200, np.uint8), "PNG")


def exif_rotated_jpeg() -> bytes:
    """An 80x40 JPEG whose EXIF orientation (6: rotate 90 CW) makes it display as 40x80."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(pixels(80, 40, 42), "JPEG", exif=exif.tobytes())


def truncated_jpeg() -> bytes:
    data = encode(pixels(64, 48, 7), "JPEG")
    return data[: len(data) // 2]


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def open_for_pipeline(data: bytes):
    """A PIL image opened straight from the bytes, for transformers.pipeline to load itself
    (it applies EXIF orientation and converts to RGB on its own)."""
    from PIL import Image

    return Image.open(io.BytesIO(data))


def default_pipeline(task: str, model_dir: str, **kwargs):
    """transformers.pipeline(task) as a user builds it: the image processor is whichever
    backend pipeline() picks here (torchvision's where it imports), the same class taskray's
    operators load (operators/loading.py)."""
    from transformers import pipeline

    return pipeline(task, model=model_dir, device="cpu", **kwargs)


def pil_pipeline(task: str, model_dir: str, **kwargs):
    """transformers.pipeline(task) with the Pillow-backend image processor, the one pipeline()
    and taskray both pick where torchvision is missing (test_image_backends.py simulates that)."""
    from transformers import AutoImageProcessor, pipeline

    processor = AutoImageProcessor.from_pretrained(model_dir, backend="pil")
    return pipeline(task, model=model_dir, image_processor=processor, device="cpu", **kwargs)


def real_photos() -> list[bytes]:
    """Fifteen real photographs (tests/fixtures/images, public domain or CC0; README there):
    120-480 px, landscape, portrait, square, a strip and one grayscale, in a fixed order."""
    import pathlib

    folder = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "images"
    return [path.read_bytes() for path in sorted(folder.glob("*.jpg"))]
