"""The competitors, each in its best honest configuration, over the same Workload:

(a) `transformers_pipeline`  transformers.pipeline over the items at one batch size;
(b) `naive_ray_data`         read_parquet -> map_batches(class calling transformers.pipeline,
                             ActorPoolStrategy) -> write_parquet, as Ray's batch-inference
                             examples write it, run as a script (benchmarks/naive_ray_data.py);
(c) `taskray_run`            the `taskray run` command line a user types: task, model, input,
                             output, id column, and no tuning flag;
(d) `forward_only`           the model's forward alone on pre-processed, length-sorted,
                             budget-bucketed tensors: no decode, no tokenizer, no I/O;
(e) `sentence_transformers`  SentenceTransformer(model).encode(texts, batch_size=32), what
                             people use for embeddings (it sorts by length); embed-text only.

Model loading is kept out of (a), (d) and (e) and reported as setup. (b) and (c) are commands,
timed from the shell as a user would time them: the interpreter, imports, their own Ray's
start-up and shutdown, and the model loading in their actors are all inside their time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.measure import ForwardClock, Measurement, PeakRss, device_utilisation, run_command
from benchmarks.workloads import Workload

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    """(b): Ray Data with transformers.pipeline in an actor pool, Parquet in and out, run as
    the script a user would write (`python -m benchmarks.naive_ray_data`), its Ray start-up
    inside its time as taskray's is."""
    shutil.rmtree(output_dir, ignore_errors=True)  # write_parquet adds to what is there
    with tempfile.TemporaryDirectory() as tmp:
        clock_path = os.path.join(tmp, "clock.jsonl")
        # without its items: Ray pickles the workload into every actor (with them, the 3,000
        # images made the constructor 3.4 GiB and its first forward came at 37 s)
        workload_path = os.path.join(tmp, "workload.pkl")
        with open(workload_path, "wb") as f:
            pickle.dump(dataclasses.replace(workload, values=[]), f)
        config = {
            "pipeline_batch_size": pipeline_batch_size,
            "actors": actors,
            "actor_cpus": actor_cpus,
            "map_batch_size": map_batch_size,
            "num_gpus": 1 if device_and_dtype()[0].type == "cuda" else 0,
        }
        argv = [
            sys.executable, "-m", "benchmarks.naive_ray_data", "--workload", workload_path, "--input", input_dir,
            "--output", output_dir, "--clock", clock_path, "--config", json.dumps(config),
        ]
        run = run_command(argv, output_dir=output_dir, log_path=output_dir.rstrip("/") + ".log", cwd=REPO)
        utilisation = device_utilisation(clock_path)
    _check_count("naive Ray Data", _parquet_rows(output_dir), len(workload))
    return Measurement(
        "naive Ray Data",
        len(workload),
        run.seconds,
        peak_rss_bytes=run.peak_rss_bytes,
        spilled_bytes=run.spilled_bytes,
        device_utilisation=utilisation,
        first_output_s=run.first_output_s,
        config=config,
    )


# ---------------------------------------------------------------------------- (c)


def naive_actors() -> int:
    """Ray's examples' pool size: one actor per GPU, else the CPUs Ray will see but one
    (left for the read and write tasks), at least 1."""
    import torch
    from ray._private.utils import get_num_cpus

    return torch.cuda.device_count() or max(1, get_num_cpus() - 1)


def taskray_command() -> list[str]:
    """The `taskray` console script of this interpreter's environment, as a user runs it;
    `python -m pipelines.cli` (the same entry point) where it is not installed."""
    script = os.path.join(os.path.dirname(sys.executable), "taskray")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "pipelines.cli"]


def taskray_run(workload: Workload, input_dir: str, output_dir: str) -> Measurement:
    """(c): `taskray run --task T --model M --input I --output O --id-column id`, with no tuning
    flag and no operator option (feature-extraction reads max_seq_length 256 from the
    sentence-transformers checkpoint itself, as the other competitors are told to truncate).

    What the job settles by itself (the spec it resolved) and its own wall time (the run
    inside the command, without the interpreter, imports and Ray start-up) come from the
    `_SUCCESS` manifest it writes."""
    argv = [
        *taskray_command(), "run", "--task", workload.task, "--model", workload.model,
        "--input", input_dir, "--output", output_dir, "--id-column", "id",
    ]
    shutil.rmtree(output_dir, ignore_errors=True)
    picks = taskray_picks(argv)
    # The command's environment is the one the harness was started in: the harness adds only
    # HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE (the models are local), nothing that tunes.
    run = run_command(argv, output_dir=output_dir, log_path=output_dir.rstrip("/") + ".log", cwd=REPO)
    with open(os.path.join(output_dir, "_SUCCESS"), encoding="utf-8") as f:
        manifest = json.load(f)
    rows = manifest["rows"]
    _check_count("taskray", rows["total"], len(workload))
    if rows["failed"]:
        raise RuntimeError(f"taskray: {rows['failed']} rows failed: {manifest.get('errors_by_kind')}")
    return Measurement(
        "taskray run",
        rows["total"],
        run.seconds,
        peak_rss_bytes=run.peak_rss_bytes,
        spilled_bytes=run.spilled_bytes,
        first_output_s=run.first_output_s,
        config={
            "command": " ".join(argv), "job_wall_s": manifest.get("wall_s"), "picks": picks, "spec": manifest.get("spec"),
            # The dtype the job computed in, as its forward actors resolved `auto` (the agreement bars follow it).
            "dtype": next(iter(manifest.get("tasks", {}).values()), {}).get("dtype"),
        },
    )


PICKS_HEADING = "# picked for the hardware"


def taskray_picks(argv: list[str]) -> list[str]:
    """What `taskray run` picks for this machine, and why: the `--dry-run` of the same command
    line (it starts no Ray), run before and outside the timing. Its lines under
    PICKS_HEADING, or the whole output if that heading is gone."""
    import subprocess

    proc = subprocess.run([*argv, "--dry-run"], cwd=REPO, capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    if PICKS_HEADING not in lines:
        return lines
    section = lines[lines.index(PICKS_HEADING) + 1 :]
    end = next((i for i, line in enumerate(section) if line.startswith("# ")), len(section))
    return [line for line in section[:end] if line.strip()]


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
        # the backend pipeline() and taskray pick here (torchvision's where it imports)
        processor = AutoImageProcessor.from_pretrained(workload.model)
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


# ---------------------------------------------------------------------------- (e)


def sentence_transformers_encode(workload: Workload, batch_size: int = 32) -> tuple[Measurement, list]:
    """(e): SentenceTransformer(model).encode(texts, batch_size=32): its own tokenizer calls,
    length sorting, forward, pooling and normalization, on every item. The model loads
    outside the timing, as (a)'s does. Returns the measurement and the embeddings in item
    order."""
    from sentence_transformers import SentenceTransformer

    if workload.role != "text":
        raise ValueError(f"sentence-transformers encodes text; workload {workload.name!r} has {workload.role}")
    device, dtype = device_and_dtype()
    started = time.perf_counter()
    model = SentenceTransformer(workload.model, device=str(device), model_kwargs={"dtype": dtype})
    setup = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        clock = ForwardClock(os.path.join(tmp, "clock.jsonl"))
        # encode calls the model through __call__, which runs the instance's forward
        model.forward = functools.partial(clock.timed, type(model).forward.__get__(model))
        with PeakRss(children=False) as peak:
            clock.created = started = time.perf_counter()
            embeddings = model.encode(list(workload.values), batch_size=batch_size)
            seconds = time.perf_counter() - started
        clock.flush()
        utilisation = device_utilisation(clock.path)
    _check_count("sentence-transformers", len(embeddings), len(workload))
    return (
        Measurement(
            "sentence-transformers",
            len(embeddings),
            seconds,
            peak_rss_bytes=peak.bytes,
            device_utilisation=utilisation,
            setup_seconds=setup,
            config={"batch_size": batch_size, "max_seq_length": model.max_seq_length},
        ),
        [np.asarray(e, np.float32).tolist() for e in embeddings],
    )


# ---------------------------------------------------------------------------- helpers


def _check_count(name: str, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(f"{name} produced {got} rows for {expected} items")


def _parquet_rows(directory: str) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetDataset(directory).read(columns=["id"]).num_rows
