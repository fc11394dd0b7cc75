"""CPU preprocessing speed of the two image-processor backends, per image, on taskray's path.

    python -m benchmarks.image_backends [--repeat N] [--threads N] [--large N]

transformers has two image-processor backends: torchvision's (`*ImageProcessor`, what
pipeline() and taskray load where torchvision imports) and Pillow's (`*ImageProcessorPil`,
where it does not). For published processor configurations (tiny_models), each
already-decoded image goes through the operator's own CPU step, `image_features`: the direct
resize shortcut where it is pixel-checked equal to the processor (fixed-size resizes), else
the processor's call without rescaling and normalization, whose uint8 pixels the device
normalizes. The processor's complete call (what pipeline()'s preprocess runs, float32 out) is
shown beside it. Images: the 15 real photos of tests/fixtures/images (120-480 px) and
`--large` phone-camera-sized ones (4032 x 3024). Decoding is not counted (it is the same for
both backends). One thread by default, as one of a CPU stage's decoding threads runs.
"""

from __future__ import annotations

import argparse
import io
import pathlib
import statistics
import tempfile
import time

import numpy as np

PROCESSORS = (
    ("ViT 224 (fixed size)", "google/vit-base-patch16-224"),
    ("ConvNeXT 224 (shortest edge 256, crop 224)", "facebook/convnext-tiny-224"),
    ("DETR 800/1333 (aspect kept)", "facebook/detr-resnet-50@no_timm"),
    ("Mask2Former 384 x 384", "facebook/mask2former-swin-tiny-coco-panoptic"),
    ("Depth Anything 518 (aspect kept, x14)", "depth-anything/Depth-Anything-V2-Small-hf"),
)


def images(large: int) -> dict[str, list]:
    from PIL import Image

    from operators.decoding.image import decode_image

    folder = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "images"
    photos = [decode_image(path.read_bytes()) for path in sorted(folder.glob("*.jpg"))]
    rng = np.random.default_rng(0)
    big = []
    for i in range(large):
        small = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize((4032, 3024), Image.BILINEAR).save(buf, format="JPEG", quality=85)
        big.append(decode_image(buf.getvalue()))
    return {"real photos 120-480 px": photos, "4032 x 3024": big}


def per_image_ms(run, pictures, repeat: int) -> float:
    for picture in pictures[:2]:  # warm up (and let the operator decide its shortcuts)
        run(picture)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        for picture in pictures:
            run(picture)
        times.append((time.perf_counter() - started) / len(pictures) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (torchvision's resize uses them)")
    parser.add_argument("--large", type=int, default=4, help="4032 x 3024 images (0: none)")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoImageProcessor

    from operators import get_operator
    from tiny_models.checkpoints import all_checkpoints, build_checkpoint_model

    torch.set_num_threads(args.threads)
    root = tempfile.mkdtemp(prefix="taskray-image-backends-")
    sets = images(args.large)
    table = all_checkpoints()
    print(f"torch threads {args.threads}; ms per image (median of {args.repeat}); decoding not counted")
    print("| processor | images | torchvision: taskray | torchvision: complete call | Pillow: taskray | Pillow: complete call |")
    print("|---|---|---|---|---|---|")
    for name, hub_id in PROCESSORS:
        model_dir = build_checkpoint_model(hub_id, root)
        task = table[hub_id][0]
        for set_name, pictures in sets.items():
            if not pictures:
                continue
            cells = []
            for backend in ("torchvision", "pil"):
                op = get_operator(task)(model_dir)
                op._processor = AutoImageProcessor.from_pretrained(model_dir, backend=backend)
                cells.append(per_image_ms(op.image_features, pictures, args.repeat))
                cells.append(per_image_ms(lambda p: op.processor(images=[p]), pictures, args.repeat))
            print(f"| {name} | {set_name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
