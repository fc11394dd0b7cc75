"""The competitors, each in its best honest configuration, over the same Workload:

(a) `transformers_pipeline`  transformers.pipeline over the items at one batch size;
(b) `naive_ray_data`         read_parquet -> map_batches(class calling transformers.pipeline,
                             ActorPoolStrategy) -> write_parquet, as Ray's batch-inference
                             examples write it;
(c) `taskray_job`            pipelines.job.run_job, Parquet in and out (what `taskray run` runs);
(d) `forward_only`           the model's forward alone on pre-processed, length-sorted,
                             budget-bucketed tensors: no decode, no tokenizer, no I/O.

Model loading is kept out of (a) and (d) and reported as setup; (b) and (c) load inside their
actors, so their times include it. Ray start-up is timed by the caller, outside (b) and (c).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import tempfile
import time
from typing import Any
from unittest import mock

import numpy as np

from benchmarks.measure import (
    ForwardClock,
    Measurement,
    PeakRss,
    device_utilisation,
    first_forward_s,
    spilled_bytes_total,
)
from benchmarks.workloads import Workload

AUTO_MODELS = {
    "feature-extraction": "AutoModel",
    "image-classification": "AutoModelForImageClassification",
    "automatic-speech-recognition": "AutoModelForCTC",
}


def device_and_dtype() -> tuple["torch.device", "torch.dtype"]:  # noqa: F821
    """What taskray's dtype="auto" picks here; every competitor runs on the same."""
    from operators.loading import resolve_device, resolve_dtype

    device = resolve_device("auto")
    return device, resolve_dtype("auto", device)


# ---------------------------------------------------------------------------- (a)


def build_pipeline(workload: Workload):
    from transformers import pipeline

    device, dtype = device_and_dtype()
    return pipeline(workload.task, model=workload.model, device=device, dtype=dtype)


def transformers_pipeline(workload: Workload, batch_size: int, pipe=None) -> tuple[Measurement, list]:
    """(a): one pipeline over all items (decoded lazily, inside the timing). Returns the
    measurement and the summarized outputs in item order."""
    started = time.perf_counter()
    pipe = pipe or build_pipeline(workload)
    setup = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        clock = ForwardClock(os.path.join(tmp, "clock.jsonl"))
        pipe._forward = functools.partial(clock.timed, type(pipe)._forward.__get__(pipe))
        with PeakRss(children=False) as peak:  # in-process: Ray's idle processes are not its
            clock.created = started = time.perf_counter()
            outputs = [
                workload.summarize(o, value, workload.model)
                for o, value in zip(
                    pipe(workload.pipeline_inputs(), batch_size=batch_size, **workload.pipeline_call),
                    workload.values,
                )
            ]
            seconds = time.perf_counter() - started
        clock.flush()
        utilisation = device_utilisation(clock.path)
        del pipe._forward
    _check_count("transformers.pipeline", len(outputs), len(workload))
    return (
        Measurement(
            f"pipeline bs={batch_size}",
            len(outputs),
            seconds,
            peak_rss_bytes=peak.bytes,
            device_utilisation=utilisation,
            setup_seconds=setup,
            config={"batch_size": batch_size},
        ),
        outputs,
    )


# ---------------------------------------------------------------------------- (b)


class PipelinePredictor:
    """The map_batches class of Ray's batch-inference examples: a transformers.pipeline
    built once per actor, called on each batch."""

    def __init__(self, workload: Workload, pipeline_batch_size: int, clock_path: str):
        self.workload = workload
        self.batch_size = pipeline_batch_size
        self.pipe = build_pipeline(workload)
        self.clock = ForwardClock(clock_path)
        self.pipe._forward = functools.partial(self.clock.timed, type(self.pipe)._forward.__get__(self.pipe))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        w = self.workload
        values = batch[w.role]
        outputs = self.pipe([w.decode(v) for v in values], batch_size=self.batch_size, **w.pipeline_call)
        self.clock.flush()
        return {"id": batch["id"], "result": [w.summarize(o, v, w.model) for o, v in zip(outputs, values)]}


def naive_ray_data(
    workload: Workload,
    input_dir: str,
    output_dir: str,
    *,
    pipeline_batch_size: int,
    actors: int,
    actor_cpus: float,
    map_batch_size: int = 64,
) -> Measurement:
    """(b): Ray Data with transformers.pipeline in an actor pool, Parquet in and out."""
    import ray

    num_gpus = 1 if device_and_dtype()[0].type == "cuda" else 0
    shutil.rmtree(output_dir, ignore_errors=True)  # write_parquet adds to what is there
    with tempfile.TemporaryDirectory() as tmp:
        clock_path = os.path.join(tmp, "clock.jsonl")
        spilled = spilled_bytes_total()
        with PeakRss() as peak:
            started, started_epoch = time.perf_counter(), time.time()
            ds = ray.data.read_parquet(input_dir).map_batches(
                PipelinePredictor,
                fn_constructor_kwargs={
                    # without its items: Ray pickles these into every actor (with them, the
                    # 3,000 images made the constructor 3.4 GiB and its first forward came at 37 s)
                    "workload": dataclasses.replace(workload, values=[]),
                    "pipeline_batch_size": pipeline_batch_size,
                    "clock_path": clock_path,
                },
                batch_size=map_batch_size,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=actor_cpus,
                num_gpus=num_gpus,
            )
            ds.write_parquet(output_dir)
            seconds = time.perf_counter() - started
        spilled = _delta(spilled, spilled_bytes_total())
        utilisation, first_forward = device_utilisation(clock_path), first_forward_s(clock_path, started_epoch)
    _check_count("naive Ray Data", _parquet_rows(output_dir), len(workload))
    return Measurement(
        "naive Ray Data",
        len(workload),
        seconds,
        peak_rss_bytes=peak.bytes,
        spilled_bytes=spilled,
        device_utilisation=utilisation,
        first_forward_s=first_forward,
        config={
            "actors": actors,
            "actor_cpus": actor_cpus,
            "num_gpus": num_gpus,
            "map_batch_size": map_batch_size,
            "pipeline_batch_size": pipeline_batch_size,
        },
    )


# ---------------------------------------------------------------------------- (c)


def _timed_forward_class(base: type, clock_path: str):
    """`base` (pipelines.stages.Forward or InlineForward) with its operator's forward timed, for
    device utilisation. Defined here so that Ray pickles it by value into the actors."""

    class TimedForward(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._clock = ForwardClock(clock_path)
            op = self._op
            op.forward = functools.partial(self._clock.timed, type(op).forward.__get__(op))

        def __call__(self, table):
            out = super().__call__(table)
            self._clock.flush()
            return out

    return TimedForward


def taskray_job(
    workload: Workload, input_dir: str, output_dir: str, job: dict[str, Any]
) -> Measurement:
    """(c): `taskray run`'s run_job over the Parquet input, written as Parquet. `job` holds
    JobSpec / TaskSpec fields (actors, forward_cpus, batch_size, block_rows, ...)."""
    import pipelines.stages
    from pipelines.job import run_job
    from pipelines.spec import build_job_spec

    spec = build_job_spec(
        {},
        {
            "input": input_dir,
            "output": output_dir,
            "mode": "overwrite",
            "task": workload.task,
            "model": workload.model,
            "options": dict(workload.options),
            "num_gpus": 1 if device_and_dtype()[0].type == "cuda" else 0,
            **job,
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        clock_path = os.path.join(tmp, "clock.jsonl")
        spilled = spilled_bytes_total()
        # Instrumentation only: the same Forward stage, its operator's forward timed.
        stages = pipelines.stages
        with mock.patch.object(stages, "Forward", _timed_forward_class(stages.Forward, clock_path)), \
                mock.patch.object(stages, "InlineForward", _timed_forward_class(stages.InlineForward, clock_path)):
            with PeakRss() as peak:
                started, started_epoch = time.perf_counter(), time.time()
                summary = run_job(spec)
                seconds = time.perf_counter() - started
        spilled = _delta(spilled, spilled_bytes_total())
        utilisation, first_forward = device_utilisation(clock_path), first_forward_s(clock_path, started_epoch)
    _check_count("taskray", summary.total, len(workload))
    if summary.failed:
        raise RuntimeError(f"taskray: {summary.failed} rows failed: {summary.errors_by_kind}")
    task = spec.tasks[0]
    return Measurement(
        "taskray run",
        summary.total,
        seconds,
        peak_rss_bytes=peak.bytes,
        spilled_bytes=spilled,
        device_utilisation=utilisation,
        first_forward_s=first_forward,
        config={
            "actors": f"{task.actors[0]}:{task.actors[1]}",
            "forward_cpus": task.forward_cpus,
            "torch_threads": task.resolved_torch_threads,
            "forward_calls": task.forward_calls,
            "batch_size": task.resolved_batch_size,
            "block_rows": spec.block_rows,
            "preprocess": spec.preprocess,
            "preprocess_actors": spec.preprocess_actors,
            "num_gpus": task.num_gpus,
            **({"options": task.options} if task.options else {}),
        },
    )


def read_taskray_output(output_dir: str, column: str) -> list:
    """The result column of a finished job, in id order (ids are item positions)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(output_dir, columns=["id", column])
    table = table.take(pc.sort_indices(table, [("id", "ascending")]))
    return table.column(column).to_pylist()


# ---------------------------------------------------------------------------- (d)


def forward_only(workload: Workload) -> Measurement:
    """(d): the model's forward pass alone, on inputs already processed, sorted by length and
    cut into micro-batches; the micro-batch budget is the best of a few on a sample."""
    import torch
    import transformers

    device, dtype = device_and_dtype()
    started = time.perf_counter()
    model = getattr(transformers, AUTO_MODELS[workload.task]).from_pretrained(workload.model, dtype=dtype)
    model = model.to(device).eval()
    rows, pad, budgets = _processed_rows(workload)
    setup = time.perf_counter() - started

    def run(batches: list[dict[str, torch.Tensor]]) -> float:
        with torch.inference_mode():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for inputs in batches:
                inputs = {k: v.to(device, non_blocking=True) for k, v in inputs.items()}
                if "lengths" in inputs:  # audio: the mask is built here, not held for every sample
                    lengths = inputs.pop("lengths")
                    positions = torch.arange(inputs["input_values"].shape[1], device=device)
                    inputs["attention_mask"] = (positions < lengths[:, None]).long()
                if "pixel_values" in inputs or "input_values" in inputs:
                    key = "pixel_values" if "pixel_values" in inputs else "input_values"
                    inputs[key] = inputs[key].to(dtype)
                model(**inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start

    sample = rows[:: max(1, len(rows) // 256)]
    run(_bucket(sample[:8], pad, budgets[0]))  # warm-up: first-call allocations, kernels
    best = min(budgets, key=lambda b: run(_bucket(sample, pad, b)))
    items, batches = len(rows), _bucket(rows, pad, best)
    del rows, sample  # the padded batches hold everything now (3,000 clips: several GiB each)
    if device.type == "cuda":
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    with PeakRss(children=False) as peak:
        seconds = run(batches)
    return Measurement(
        "forward only",
        items,
        seconds,
        peak_rss_bytes=peak.bytes,
        device_utilisation=1.0,
        setup_seconds=setup,
        config={"budget": best, "micro_batches": len(batches)},
    )


def _processed_rows(workload: Workload) -> tuple[list[dict[str, np.ndarray]], dict[str, float], list[int]]:
    """Each item as the model's unpadded inputs, the pad value of each input, and the
    micro-batch budgets (rows x longest row) to try."""
    from transformers import AutoFeatureExtractor, AutoImageProcessor, AutoTokenizer

    if workload.role == "text":
        tokenizer = AutoTokenizer.from_pretrained(workload.model)
        kwargs = workload.pipeline_call["tokenize_kwargs"]
        encoded = tokenizer(workload.values, return_attention_mask=False, **kwargs)
        rows = [{"input_ids": np.asarray(ids, np.int64)} for ids in encoded["input_ids"]]
        for row in rows:
            row["attention_mask"] = np.ones_like(row["input_ids"])
        if "token_type_ids" in encoded:
            for row, types in zip(rows, encoded["token_type_ids"]):
                row["token_type_ids"] = np.asarray(types, np.int64)
        pad = {"input_ids": tokenizer.pad_token_id or 0, "attention_mask": 0, "token_type_ids": 0}
        return rows, pad, [512, 1024, 2048, 8192]
    if workload.role == "image":
        processor = AutoImageProcessor.from_pretrained(workload.model, backend="pil")
        rows = []
        for value in workload.values:
            image = workload.decode(value).convert("RGB")
            pixels = processor(images=[image], return_tensors="np")["pixel_values"][0]
            rows.append({"pixel_values": pixels.astype(np.float32)})
        # every image has the processor's fixed size: "length" 1, budget = rows per batch
        return rows, {"pixel_values": 0.0}, [32, 128, 512]
    extractor = AutoFeatureExtractor.from_pretrained(workload.model)
    rows = []
    for value in workload.values:
        decoded = workload.decode(value)
        out = extractor(decoded["raw"], sampling_rate=decoded["sampling_rate"], return_attention_mask=True)
        rows.append({"input_values": np.asarray(out["input_values"][0], np.float32)})
    rate = extractor.sampling_rate
    # No per-sample attention mask here: an int64 mask is twice the audio, and at 3,000 clips
    # rows and batches with masks filled 21 GiB. `_bucket` keeps lengths; `run` builds it.
    return rows, {"input_values": 0.0}, [rate * 30, rate * 120, rate * 480]


def _row_length(row: dict[str, np.ndarray]) -> int:
    first = next(iter(row.values()))
    return 1 if first.ndim == 3 else len(first)  # images: fixed size, counted as rows


def _bucket(rows: list[dict[str, np.ndarray]], pad: dict[str, float], budget: int) -> list[dict]:
    """Sorted by length, cut on the padded-size budget, padded into host tensors."""
    import torch

    from operators.batching import budget_batches, pad_sequences

    batches = []
    for positions in budget_batches([_row_length(r) for r in rows], budget):
        batch = {}
        for key in rows[positions[0]]:
            arrays = [rows[p][key] for p in positions]
            if arrays[0].ndim == 3:
                batch[key] = torch.from_numpy(np.stack(arrays))
            else:
                batch[key] = torch.from_numpy(pad_sequences(arrays, pad[key])[0])
            if key == "input_values":  # audio: forward_only's run builds the mask from these
                batch["lengths"] = torch.tensor([len(a) for a in arrays])
        batches.append(batch)
    return batches


# ---------------------------------------------------------------------------- helpers


def _check_count(name: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{name} produced {got} rows for {expected} items")


def _parquet_rows(directory: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetDataset(directory).read(columns=["id"]).num_rows


def _delta(before: int | None, after: int | None) -> int | None:
    return None if before is None or after is None else after - before
