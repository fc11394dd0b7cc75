"""Reduced precision on the CPU: speed against float32 and agreement with it.

`python -m benchmarks.precision [--rows N] [--threads 1,2] [--vision]`

Over the embed-text workload (the real all-MiniLM-L6-v2, pydoc prose, truncated at 256 tokens),
each precision runs the feature-extraction operator's `forward` alone (tokenized beforehand,
length-sorted micro-batches on the operator's budget, pooling included) at 1 and 2 torch
threads, and is compared with:

* `forward only, float32`: the bare float32 model on the same micro-batches (no pooling, no
  copies back), the forward-only limit that the embed-text benchmark reports;
* the float32 operator's embeddings: cosine per row, min and mean;
* labels: a text-classification checkpoint made of the same real encoder and a head
  re-centred on calibration texts (`tiny_models.calibration.recenter_linear`, so that
  labels vary with the input), run through the text-classification operator; the share of
  rows whose label matches float32's.

Rows `not offered` are measured to show why taskray offers only `dtype=bfloat16`:
float16; bf16 autocast over float32 weights; torch.ao's dynamic int8 quantization of every
nn.Linear (per-tensor activation ranges; deprecated since torch 2.10); and int8 weight-only
Linear layers (one scale per output channel, torch's `_weight_int8pack_mm` kernel) under bf16
activations.

`--vision` adds a ViT-base configuration with random weights (speed only: random weights give
no meaningful agreement) on 224 px images through the model's forward.

Speed is timed in pairs (see `measure_text`), so the ratios hold on a loaded machine better
than the rows/s do.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.workloads import EMBED_MAX_TOKENS

# (name, operator kwargs, offered). dtype is the knob users set; the other keys are patched in
# by precision_operator to measure what taskray does not offer.
VARIANTS: list[tuple[str, dict[str, Any], bool]] = [
    ("float32", {"dtype": "float32"}, True),
    ("bf16 (dtype=bfloat16)", {"dtype": "bfloat16"}, True),
    ("float16 (dtype=float16)", {"dtype": "float16"}, False),
    ("autocast bf16, float32 weights", {"dtype": "float32", "autocast": True}, False),
    ("torch.ao dynamic int8", {"dtype": "float32", "ao_dynamic": True}, False),
    ("int8 weight-only, bf16", {"dtype": "bfloat16", "int8_weights": True}, False),
]
CLASSES = 8
FORWARD_ONLY = "forward only, float32 (bare model)"
CHUNK_ROWS = 50


@dataclass
class Row:
    name: str
    offered: bool
    threads: int
    seconds: float = float("inf")
    cosine_min: float | None = None
    cosine_mean: float | None = None
    label_agreement: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.precision", description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=600, help="Texts to embed (default 600).")
    p.add_argument("--label-rows", type=int, default=300, help="Texts to classify (default 300).")
    p.add_argument("--threads", default="1,2", help="torch thread counts (default 1,2).")
    p.add_argument("--rounds", type=int, default=2, help="Interleaved rounds; each row keeps its fastest (default 2).")
    p.add_argument("--vision", action="store_true", help="Also time ViT-base (random weights) on 224 px images.")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------- operators


def precision_operator(task: str, model: str, kwargs: dict[str, Any]):
    """The operator for one variant, loaded; the reference-only variants are patched in here."""
    from operators import get_operator

    kwargs = dict(kwargs)
    autocast, ao_dynamic = kwargs.pop("autocast", False), kwargs.pop("ao_dynamic", False)
    int8_weights = kwargs.pop("int8_weights", False)
    op = get_operator(task)(model, device="cpu", max_length=EMBED_MAX_TOKENS, **kwargs).load()
    if int8_weights:
        int8_weight_only(op._model)
    if ao_dynamic:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation warning
            op._model = torch.ao.quantization.quantize_dynamic(op._model, {torch.nn.Linear}, dtype=torch.qint8)
    if autocast:
        forward = op.forward

        def autocast_forward(prepared):
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                return forward(prepared)

        op.forward = autocast_forward
    return op


def int8_weight_only(model) -> None:
    """Replace the nn.Linear layers of the base model (the task head keeps its own) by int8
    weight-only ones, in place: symmetric, one scale per output channel, computed by
    `aten._weight_int8pack_mm` in the activations' dtype."""
    import torch

    class Int8Linear(torch.nn.Module):
        def __init__(self, linear: torch.nn.Linear):
            super().__init__()
            weight = linear.weight.detach().float()
            scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
            self.register_buffer("scales", scale.to(linear.weight.dtype))
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.reshape(-1, x.shape[-1]).to(self.scales.dtype).contiguous()
            out = torch.ops.aten._weight_int8pack_mm(flat, self.weight_int8, self.scales)
            out = out if self.bias is None else out + self.bias
            return out.reshape(*x.shape[:-1], -1).to(x.dtype)

    for parent in list(model.base_model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Linear:
                setattr(parent, name, Int8Linear(child))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def warm(op, prepared) -> None:
    """First calls allocate and pick kernels: one small call outside the timing."""
    sample = {k: v[:: max(1, len(v) // 16)] for k, v in prepared.items()}
    op.forward(sample)


def classifier_checkpoint(encoder: str, directory: str) -> str:
    """A text-classification checkpoint: the real encoder plus a head re-centred on calibration
    texts, saved as safetensors with the encoder's tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tiny_models.calibration import calibration_texts, recenter_linear

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the new head's "newly initialized" notice
        model = AutoModelForSequenceClassification.from_pretrained(
            encoder, num_labels=CLASSES, id2label={i: f"class_{i}" for i in range(CLASSES)}
        ).eval()
    texts = calibration_texts()
    with torch.no_grad():
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=EMBED_MAX_TOKENS, return_tensors="pt")
        pooled = model.bert(**inputs).pooler_output
        recenter_linear(model.classifier, pooled)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# ---------------------------------------------------------------------------- the table


def bare_forward(op, prepared) -> None:
    """The float32 model alone on the operator's micro-batches: no pooling, no copies back."""
    import torch

    features = prepared["features"]
    with torch.inference_mode():
        for positions in op.plan_batches(features):
            op.model(**op.model_inputs([features[p] for p in positions]))


def measure_text(args: argparse.Namespace) -> list[Row]:
    """Speed is timed in pairs: the texts, sorted by length, are cut into chunks, and every
    variant runs each chunk in turn (rotating who goes first), so a neighbour's load on a shared
    machine falls on all variants alike. Each variant keeps its fastest round."""
    import torch

    from benchmarks.workloads import embed_text

    workload = embed_text(args.rows)
    label_texts = workload.values[: args.label_rows]
    thread_counts = [int(t) for t in args.threads.split(",")]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        classifier = classifier_checkpoint(workload.model, os.path.join(tmp, "classifier"))
        embedders = {name: precision_operator("feature-extraction", workload.model, kw) for name, kw, _ in VARIANTS}
        classifiers = {name: precision_operator("text-classification", classifier, kw) for name, kw, _ in VARIANTS}
        fp32 = embedders[VARIANTS[0][0]]
        prepared = fp32.preprocess({"text": workload.values})
        order = sorted(range(len(workload)), key=lambda i: len(prepared["features"][i]["input_ids"]))
        chunks = [order[i : i + CHUNK_ROWS] for i in range(0, len(order), CHUNK_ROWS)]
        runners: dict[str, Callable[[dict], Any]] = {FORWARD_ONLY: functools.partial(bare_forward, fp32)}
        runners.update({name: op.forward for name, op in embedders.items()})
        embeddings = {name: np.zeros((len(workload), 384), np.float32) for name in embedders}
        labels: dict[str, list[str]] = {}
        for threads in thread_counts:
            torch.set_num_threads(threads)
            for op in embedders.values():
                warm(op, prepared)
            best = {name: float("inf") for name in runners}
            for _ in range(args.rounds):
                spent = dict.fromkeys(runners, 0.0)
                for c, chunk in enumerate(chunks):
                    part = {k: [v[i] for i in chunk] for k, v in prepared.items()}
                    names = list(runners)
                    for name in names[c % len(names) :] + names[: c % len(names)]:
                        seconds, out = timed(lambda: runners[name](part))
                        spent[name] += seconds
                        if name in embeddings:
                            embeddings[name][chunk] = np.stack([np.asarray(r, np.float32) for r in out["raw"]])
                best = {name: min(best[name], spent[name]) for name in runners}
            for name, op in classifiers.items():
                if name not in labels:
                    labels[name] = op({"text": label_texts})["label"]
            rows.append(Row(FORWARD_ONLY, False, threads, best[FORWARD_ONLY], extra={"items": len(workload)}))
            rows.extend(Row(name, offered, threads, best[name]) for name, _, offered in VARIANTS)
    reference = embeddings[VARIANTS[0][0]]
    for row in rows:
        row.extra["items"] = len(workload)
        if row.name == FORWARD_ONLY:
            continue
        e = embeddings[row.name]
        cosine = (e * reference).sum(1) / (np.linalg.norm(e, axis=1) * np.linalg.norm(reference, axis=1))
        row.cosine_min, row.cosine_mean = float(cosine.min()), float(cosine.mean())
        agree = [a == b for a, b in zip(labels[row.name], labels[VARIANTS[0][0]])]
        row.label_agreement = sum(agree) / len(agree)
    return rows


def measure_vision(thread_counts: list[int], rounds: int) -> list[tuple[str, int, float]]:
    """ViT-base (random weights) forward on 32 images of 224 px, 8 per call: (variant, threads,
    images/s)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    reference = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation warning
        # a quantized copy; the reference stays float32
        dynamic = torch.ao.quantization.quantize_dynamic(reference, {torch.nn.Linear}, dtype=torch.qint8)
    bf16 = ViTForImageClassification(ViTConfig(num_labels=1000)).eval()
    bf16.load_state_dict(reference.state_dict())
    models = {
        "float32": (reference, torch.float32),
        "bf16 (dtype=bfloat16)": (bf16.to(torch.bfloat16), torch.bfloat16),
        "torch.ao dynamic int8": (dynamic, torch.float32),
    }
    pixels = torch.randn(32, 3, 224, 224)
    out = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        best: dict[str, float] = {}
        with torch.inference_mode():
            for model, dtype in models.values():
                model(pixel_values=pixels[:2].to(dtype))
            for _ in range(rounds):
                for name, (model, dtype) in models.items():
                    seconds, _ = timed(lambda: [model(pixel_values=pixels[i : i + 8].to(dtype)) for i in range(0, 32, 8)])
                    best[name] = min(best.get(name, float("inf")), seconds)
        out.extend((name, threads, 32 / seconds) for name, seconds in best.items())
    return out


def print_table(rows: list[Row]) -> None:
    seconds = {(r.name, r.threads): r.seconds for r in rows}
    print(
        "| precision | offered | threads | rows/s | × float32 operator | × float32 forward only | "
        "cosine min | cosine mean | label agreement |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = r.extra["items"] / r.seconds
        vs_op = seconds[(VARIANTS[0][0], r.threads)] / r.seconds
        vs_limit = seconds[(FORWARD_ONLY, r.threads)] / r.seconds
        if r.name == FORWARD_ONLY:
            print(f"| {r.name} | | {r.threads} | {rate:.1f} | {vs_op:.2f} | 1.00 | | | |")
            continue
        print(
            f"| {r.name} | {'yes' if r.offered else 'not offered'} | {r.threads} | {rate:.1f} | {vs_op:.2f} | "
            f"{vs_limit:.2f} | {r.cosine_min:.4f} | {r.cosine_mean:.5f} | {r.label_agreement:.3f} |"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from operators.loading import cpu_has_native_bf16

    print(
        f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"native bf16 {cpu_has_native_bf16()}, {os.cpu_count()} CPUs; {args.rows} texts, "
        f"{args.label_rows} classified",
        flush=True,
    )
    with contextlib.redirect_stderr(open(os.devnull, "w")):  # weight-loading progress bars
        rows = measure_text(args)
    print_table(rows)
    if args.vision:
        print("\n| ViT-base, random weights | threads | images/s |\n|---|---:|---:|")
        for name, threads, rate in measure_vision([int(t) for t in args.threads.split(",")], args.rounds):
            print(f"| {name} | {threads} | {rate:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
