"""Micro-batch sizes with each model family's real processor settings.

    python -m benchmarks.batch_sizes [--rows N] [--call-rows N] [--forward-rows N] [--family NAME]

For DETR, Mask2Former, GLPN and wav2vec2-base, the published processor settings are rebuilt
offline over tiny weights (only the planning is measured, so the weights' size does not
matter). A realistic mix of photo sizes (phone and camera photos in both orientations, video
frames, squares, screenshots, web images, a panorama) or of clip lengths goes through the
operators' own preprocess, in calls of the operator's rows per call, and each call's
micro-batches are planned by its `plan_batches`. For one configuration, the first
`--forward-rows` rows also run through its real `forward`, which must run the micro-batches
that `plan_batches` gives for them (0 skips it).

Each family is shown on the CUDA defaults and on the CPU defaults (they differ for audio,
whose sample budget is per device; images have one pixel budget). Images are shown with the
default (one exact tensor shape per micro-batch: each image's image-alone answer) and with the
opt-in padded buckets (`max_padding` 0.25; only models that read a pixel mask, DETR, use it).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
from collections import Counter
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# (width, height, rows out of 64): a photo collection's mix. iPhone/Android 4:3 both ways,
# DSLR 3:2, 16:9 video frames and phone screenshots, squares, and odd web sizes.
PHOTO_MIX: tuple[tuple[int, int, int], ...] = (
    (4032, 3024, 14), (3024, 4032, 10), (4000, 3000, 4), (6000, 4000, 4), (4000, 6000, 2),
    (1920, 1080, 8), (1080, 1920, 4), (1170, 2532, 2), (3024, 3024, 3), (1080, 1080, 2),
    (640, 427, 3), (800, 533, 2), (1024, 768, 2), (500, 375, 1), (1000, 563, 1), (8000, 2000, 1),
    (2048, 1365, 1),
)
# KITTI raw recordings (vinvino02/glpn-kitti's data): each recording day has its own frame size.
KITTI_MIX: tuple[tuple[int, int, int], ...] = (
    (1242, 375, 24), (1241, 376, 12), (1224, 370, 12), (1238, 374, 8), (1226, 370, 8),
)
RATE = 16_000


@dataclass
class Family:
    name: str
    settings: str  # the processor settings, in words
    task: str
    build: Callable[[str], str]  # model directory under a root
    inputs: str  # "photos" | "kitti" | "utterances" | "windows"
    forward: bool = True  # run the real forward for the CUDA configuration (audio) or each image configuration
    notes: list[str] = field(default_factory=list)


def _tiny_with_processor(task: str, processor_factory: Callable[[], Any], variant: str | None = None):
    """A tiny model of `task` with another processor saved next to it."""

    def build(root: str) -> str:
        from tiny_models import build_tiny_model

        name = processor_factory.__name__
        out = os.path.join(root, f"{task}-{name}")
        if not os.path.exists(os.path.join(out, "config.json")):
            shutil.copytree(build_tiny_model(task, root, variant=variant), out, dirs_exist_ok=True)
            for file in ("preprocessor_config.json", "processor_config.json"):
                if os.path.exists(os.path.join(out, file)):
                    os.remove(os.path.join(out, file))
            processor_factory().save_pretrained(out)
        return out

    return build


def detr_published():
    # facebook/detr-resnet-50's legacy file (size 800, max_size 1333) reads as these defaults;
    # tests/checkpoints/test_detr.py holds that.
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    return DetrImageProcessorPil()


def mask2former_published():
    # facebook/mask2former-swin-*-coco-*: one fixed 384 x 384 resize (transformers' integration
    # test of mask2former-swin-small-coco-instance expects pixel_values of (1, 3, 384, 384)).
    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

    return Mask2FormerImageProcessorPil(size={"height": 384, "width": 384}, size_divisor=32)


def mask2former_processor_defaults():
    # what a fine-tune saved from Mask2FormerImageProcessor() carries: 800 / 1333, multiples of 32
    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

    return Mask2FormerImageProcessorPil()


def glpn_published():
    from transformers.models.glpn.image_processing_pil_glpn import GLPNImageProcessorPil

    return GLPNImageProcessorPil(size_divisor=32)  # vinvino02/glpn-kitti: bilinear, rescale only


def _checkpoint(hub_id: str) -> Callable[[str], str]:
    def build(root: str) -> str:
        from tiny_models.checkpoints import build_checkpoint_model

        return build_checkpoint_model(hub_id, root)

    return build


def _tiny(task: str) -> Callable[[str], str]:
    def build(root: str) -> str:
        from tiny_models import build_tiny_model

        return build_tiny_model(task, root)

    return build


FAMILIES: tuple[Family, ...] = (
    Family("DETR", "facebook/detr-resnet-50: shortest edge 800, longest 1333, pad", "object-detection",
           _tiny_with_processor("object-detection", detr_published), "photos"),
    Family("Mask2Former", "facebook/mask2former-swin-*-coco-*: fixed 384 x 384, size_divisor 32",
           "image-segmentation", _tiny_with_processor("image-segmentation", mask2former_published), "photos"),
    Family("Mask2Former (processor defaults)", "Mask2FormerImageProcessor(): 800 / 1333, size_divisor 32",
           "image-segmentation", _tiny_with_processor("image-segmentation", mask2former_processor_defaults),
           "photos", forward=False,
           notes=["forward not run: the same exact-shape path as the published 384 x 384 row, at 5x the pixels"]),
    Family("GLPN (KITTI frames)", "vinvino02/glpn-kitti: size_divisor 32, no resize", "depth-estimation",
           _tiny_with_processor("depth-estimation", glpn_published), "kitti"),
    Family("GLPN (photos)", "vinvino02/glpn-kitti: size_divisor 32, no resize", "depth-estimation",
           _tiny_with_processor("depth-estimation", glpn_published), "photos", forward=False,
           notes=["forward not run: GLPN keeps the photo's size; a 4032 x 3008 input's first stage attends "
                  "758k queries to 11.8k keys (9e9 scores per head), more memory than this machine has"]),
    Family("wav2vec2-base (utterances)", "facebook/wav2vec2-base-960h: group norm, no attention mask",
           "automatic-speech-recognition", _checkpoint("facebook/wav2vec2-base-960h"), "utterances"),
    Family("wav2vec2-base (10 s windows)", "facebook/wav2vec2-base-960h: group norm, no attention mask",
           "automatic-speech-recognition", _checkpoint("facebook/wav2vec2-base-960h"), "windows"),
    Family("wav2vec2 large-lv60 style (utterances)", "layer norm, attention mask: padding is exact",
           "automatic-speech-recognition", _tiny("automatic-speech-recognition"), "utterances"),
)


# ---------------------------------------------------------------------------- inputs


def _photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG of this size with smooth content (cheap to make at 24 megapixels)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(height // 64, 2), max(width // 64, 2), 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _mix_rows(mix, rows: int, seed: int) -> list[int]:
    """Which entry of `mix` each of `rows` rows is, in a shuffled order (rows arrive mixed)."""
    weights = np.array([n for *_, n in mix], dtype=np.float64)
    counts = np.floor(weights / weights.sum() * rows).astype(int)
    counts[np.argsort(-weights)[: rows - counts.sum()]] += 1
    order = np.repeat(np.arange(len(mix)), counts)
    np.random.default_rng(seed).shuffle(order)
    return order.tolist()


def image_features(op, mix, rows: int) -> list[dict[str, Any]]:
    """Real preprocess of each distinct size once; rows share their size's features."""
    distinct = [_photo(w, h, i) for i, (w, h, _) in enumerate(mix)]
    prepared = op.preprocess({"image": distinct})
    if any(prepared["error"]):
        raise RuntimeError(f"{op.model_id}: preprocess failed: {prepared['error']}")
    return [prepared["features"][i] for i in _mix_rows(mix, rows, seed=1)]


def audio_features(kind: str, rows: int) -> list[dict[str, Any]]:
    """Utterances: 1.5-16 s, any sample count (read speech). Windows: recordings of 1-3 min cut
    into 10 s windows, each recording's last window shorter."""
    rng = np.random.default_rng(2)
    if kind == "utterances":
        lengths = rng.integers(int(1.5 * RATE), 16 * RATE, rows).tolist()
    else:
        lengths = []
        while len(lengths) < rows:
            total = int(rng.integers(60 * RATE, 180 * RATE))
            lengths += [10 * RATE] * (total // (10 * RATE)) + ([total % (10 * RATE)] if total % (10 * RATE) else [])
        lengths = lengths[:rows]
    return [{"waveform": (0.1 * rng.standard_normal(n)).astype(np.float32)} for n in lengths]


# ---------------------------------------------------------------------------- measuring


def configurations(op) -> dict[str, dict[str, Any]]:
    """Operator options per configuration: the CUDA and CPU defaults, now and before."""
    from operators.audio_inputs import CPU_AUDIO_BUDGET_S, GPU_AUDIO_BUDGET_S

    if op.modality == "audio":
        rate = op.sampling_rate
        return {
            "now, CUDA defaults": {"max_batch_samples": GPU_AUDIO_BUDGET_S * rate},
            "now, CPU defaults": {"max_batch_samples": CPU_AUDIO_BUDGET_S * rate},
        }
    return {
        "default (exact shapes, max_padding 0), CUDA and CPU": {},
        "opt-in padded buckets (max_padding 0.25), CUDA and CPU": {"max_padding": 0.25},
    }


def plan_sizes(op, features: list[dict[str, Any]], call_rows: int) -> list[int]:
    """Micro-batch sizes over calls of `call_rows` rows, as the forward stage gets them."""
    sizes = []
    for start in range(0, len(features), call_rows):
        pieces = [p for f in features[start : start + call_rows] for p in op.row_pieces(f)]
        sizes += [len(b) for b in op.plan_batches(pieces)]
    return sizes


def forward_sizes(op, features: list[dict[str, Any]], call_rows: int) -> list[int]:
    """The micro-batches the real forward runs (its forward_batch calls), over the same calls."""
    seen: list[int] = []
    run = op.forward_batch

    def recording(batch):
        seen.append(len(batch))
        return run(batch)

    op.forward_batch = recording
    try:
        for start in range(0, len(features), call_rows):
            chunk = features[start : start + call_rows]
            out = op.forward({"features": chunk, "error": [None] * len(chunk)})
            failed = [e for e in out["error"] if e]
            if failed:
                raise RuntimeError(f"{op.model_id}: forward failed: {failed[:3]}")
    finally:
        del op.forward_batch
    return seen


def measure(family: Family, root: str, rows: int, call_rows: int | None, forward_rows: int) -> dict[str, Any]:
    from operators import get_operator

    started = time.perf_counter()
    op = get_operator(family.task)(family.build(root)).load()
    per_call = call_rows or op.rows_per_call
    if family.inputs in ("utterances", "windows"):
        features = audio_features(family.inputs, rows)
    else:
        features = image_features(op, PHOTO_MIX if family.inputs == "photos" else KITTI_MIX, rows)
    shapes = {tuple(np.shape(f.get("pixels", f.get("waveform")))) for f in features}
    result = {"family": family.name, "settings": family.settings, "rows": rows, "rows_per_call": per_call,
              "distinct_shapes": len(shapes), "configurations": {}, "notes": list(family.notes)}
    for name, options in configurations(op).items():
        configured = op.with_options(**options)
        sizes = plan_sizes(configured, features, per_call)
        entry = {
            "options": options, "micro_batches": sizes, "median": statistics.median(sizes),
            "mean": round(len(features) / len(sizes), 1),
        }
        if family.forward and forward_rows and ("CUDA" in name or op.modality == "image"):
            subset = features[: min(forward_rows, per_call)]
            ran, planned = forward_sizes(configured, subset, per_call), plan_sizes(configured, subset, per_call)
            if sorted(ran) != sorted(planned):
                raise RuntimeError(f"{family.name}: forward ran {ran}, plan_batches gave {planned}")
            entry["forward_checked"] = len(subset)
        if op.modality == "audio" or "opt-in" in name:
            entry["median_at_4x_rows_per_call"] = statistics.median(plan_sizes(configured, features, 4 * per_call))
        result["configurations"][name] = entry
    result["seconds"] = round(time.perf_counter() - started, 1)
    return result


def print_result(result: dict[str, Any]) -> None:
    print(f"\n{result['family']}  ({result['settings']})")
    print(f"  {result['rows']} rows in calls of {result['rows_per_call']}, {result['distinct_shapes']} distinct input shapes")
    for name, entry in result["configurations"].items():
        sizes = entry["micro_batches"]
        checked = f" (forward ran the planned batches of {entry['forward_checked']} rows)" if entry.get("forward_checked") else ""
        key = "median_at_4x_rows_per_call"
        more = f"; median with {4 * result['rows_per_call']} rows per call: {entry[key]:g}" if key in entry else ""
        print(f"  {name}: {len(sizes)} micro-batches, median {entry['median']:g}, mean {entry['mean']:g}{more}{checked}")
        counts = sorted(Counter(sizes).items(), reverse=True)
        print("    sizes: " + ", ".join(f"{size}" if n == 1 else f"{size} x{n}" for size, n in counts))
    for note in result["notes"]:
        print(f"  note: {note}")
    print(f"  ({result['seconds']} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128, help="rows per family (default 128: two calls of 64)")
    parser.add_argument("--call-rows", type=int, default=None, help="rows per forward call (default: the operator's)")
    parser.add_argument("--forward-rows", type=int, default=32, help="rows run through the real forward (0: plan only)")
    parser.add_argument("--family", action="append", help="only these families (substring match)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--models", help="where the tiny models are built (default: a temporary directory)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    root = args.models or tempfile.mkdtemp(prefix="taskray-batch-sizes-")
    results = []
    for family in FAMILIES:
        if args.family and not any(f.lower() in family.name.lower() for f in args.family):
            continue
        result = measure(family, root, args.rows, args.call_rows, args.forward_rows)
        print_result(result)
        results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if not args.models:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
