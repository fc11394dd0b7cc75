"""DETR and Whisper at their full default micro-batches on a device, in the auto dtype and in
float32 (the GPU tests run every operator at `max_batch_rows=4`; this runs the batches a job
gets).

    python -m benchmarks.full_batches [--device cuda] [--images 64] [--clips 32]

Tiny models with the published configurations (DETR: facebook/detr-resnet-50's processor,
shortest edge 800, longest 1333; Whisper: openai/whisper-tiny's), built offline, run through
their operators with default options over the benchmark's pictures (100-1000 px, JPEG and PNG)
and clips (1-30 s). Per family and dtype: rows/s of the operator call (after one warm call),
the largest and the mean micro-batch it ran, and the share of rows whose answer equals
float32's (detections: the same labels in the same order; Whisper: the same transcript).
Random tiny weights make that share a check that the batch runs, not an accuracy figure.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Any

FAMILIES = {
    # name: (task, tiny model variant, workload builder, input role, the answer compared)
    "detr": ("object-detection", None, "classify_images", "image", "objects"),
    "whisper": ("automatic-speech-recognition", "whisper", "asr", "audio", "text"),
}


def answer_key(family: str, value: Any) -> Any:
    if family == "detr":
        return tuple(o["label"] for o in value or [])
    return value


def run_family(family: str, device: str, rows: int, models_dir: str) -> list[dict[str, Any]]:
    from benchmarks import workloads
    from operators import get_operator
    from tiny_models import build_tiny_model

    task, variant, builder, role, column = FAMILIES[family]
    model = build_tiny_model(task, models_dir, variant=variant)
    values = getattr(workloads, builder)(rows, model).values
    out: list[dict[str, Any]] = []
    answers: dict[str, list] = {}
    for dtype in ("auto", "float32"):
        op = get_operator(task)(model, device=device, dtype=dtype).load()
        sizes: list[int] = []
        inner = op.forward_batch

        def counted(features, _inner=inner):
            sizes.append(len(features))
            return _inner(features)

        op.forward_batch = counted
        op({role: values[: min(4, len(values))]})  # first calls pick kernels and allocate
        sizes.clear()
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        started = time.perf_counter()
        result = op({role: values})
        seconds = time.perf_counter() - started
        errors = [e for e in result["error"] if e is not None]
        answers[dtype] = [answer_key(family, v) for v in result[column]]
        out.append({
            "family": family, "dtype": str(op.dtype).removeprefix("torch."), "rows": len(values),
            "rows_per_s": len(values) / seconds, "micro_batches": len(sizes),
            "largest_micro_batch": max(sizes, default=0), "mean_micro_batch": sum(sizes) / max(1, len(sizes)),
            "row_errors": len(errors),
        })
    same = sum(a == b for a, b in zip(answers["auto"], answers["float32"])) / max(1, len(values))
    for r in out:
        r["equal_to_float32"] = same if r["dtype"] != "float32" else 1.0
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.full_batches", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--images", type=int, default=64, help="pictures for DETR (default 64)")
    parser.add_argument("--clips", type=int, default=32, help="clips for Whisper (default 32)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as models_dir:
        for family, n in (("detr", args.images), ("whisper", args.clips)):
            rows += run_family(family, args.device, n, models_dir)
    print(f"# full batches on {args.device}")
    print("| family | dtype | rows | rows/s | micro-batches | largest | mean | row errors | equal to float32 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['family']} | {r['dtype']} | {r['rows']} | {r['rows_per_s']:.1f} | {r['micro_batches']} | "
              f"{r['largest_micro_batch']} | {r['mean_micro_batch']:.1f} | {r['row_errors']} | {r['equal_to_float32']:.2f} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 1 if any(r["row_errors"] for r in rows) else 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    raise SystemExit(main())
