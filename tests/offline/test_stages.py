"""The Ray Data UDFs called directly (no Ray): the CPU stage never loads weights, the data
between stages is compact, and a column of the wrong type becomes per-row errors."""

from __future__ import annotations

import pickle

import pyarrow as pa
import pytest

from pipelines.hardware import Hardware, Node
from pipelines.offline.plan import ForwardPlan, plan_tasks
from pipelines.spec import TaskSpec
from pipelines.offline.stages import Forward, Preprocess, error_column, features_column


@pytest.fixture(scope="module")
def task(tiny_model) -> TaskSpec:
    return TaskSpec(task="text-classification", model=tiny_model("text-classification"), columns={"text": "body"})


def forward_plan(task: TaskSpec, names: dict[str, str] | None = None, **fields) -> ForwardPlan:
    """`task`'s plan (pipelines/offline/plan.py) with `names` as its output columns and `fields` set:
    by default the Preprocess-pool layout, 1 call of 1 thread."""
    import dataclasses

    plan = plan_tasks([task], Hardware((Node(2),), "test")).forwards[0]
    defaults = {"preprocess": False, "torch_threads": 1, "forward_calls": 1}
    return dataclasses.replace(plan, **({"outputs": names} if names else {}), **{**defaults, **fields})


def forward_stage(task: TaskSpec, names: dict[str, str], **fields) -> Forward:
    return Forward(forward_plan(task, names, **fields))


def preprocess_stage(task: TaskSpec, keep: list[str] | None) -> Preprocess:
    return Preprocess([forward_plan(task)], keep=keep)


def call_at_once(stage, tables: list[pa.Table]) -> list[list[dict]]:
    """Each table through `stage` in its own thread, with the two calls made to meet inside the
    operator's forward: a barrier only two threads can pass fails (BrokenBarrierError) when
    the stage runs its forwards one at a time."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    both_inside = threading.Barrier(2, timeout=30)
    forward = stage._op.forward

    def forward_meeting_the_other_call(prepared):
        both_inside.wait()
        return forward(prepared)

    stage._op.forward = forward_meeting_the_other_call
    with ThreadPoolExecutor(2) as pool:
        return [f.result().to_pylist() for f in [pool.submit(stage, t) for t in tables]]


def test_preprocess_is_compact_and_loads_no_weights(task):
    stage = preprocess_stage(task, keep=["id"])
    table = pa.table({"id": ["a", "b", "c"], "body": ["short", "a much longer sentence with many more words in it", None]})
    out = stage(table)
    assert out.column_names == ["id", features_column("text-classification"), error_column("text-classification")]
    assert out.schema.field(features_column("text-classification")).type == pa.binary()
    (_, _, op), = stage._tasks
    assert op._model is None, "the CPU stage must never load weights"
    feats = [None if b is None else pickle.loads(b) for b in out.column(1).to_pylist()]
    assert len(feats[0]["input_ids"]) < len(feats[1]["input_ids"]), "features are unpadded"
    assert feats[0]["input_ids"].dtype.itemsize <= 4
    assert feats[2] is None and out.column(2).to_pylist()[2] == "input: expected text as str, got None"


def test_forward_adds_results_and_drops_internal_columns(task):
    pre = preprocess_stage(task, keep=["id"])
    fwd = forward_stage(task, {"label": "label", "score": "score", "scores": "scores", "error": "error"})
    out = fwd(pre(pa.table({"id": ["a", "b"], "body": ["one text", ""]})))
    assert out.column_names == ["id", "label", "score", "scores", "error"]
    assert out.column("error").to_pylist() == [None, "input: empty text"]
    assert out.column("label").to_pylist()[0] in ("negative", "neutral", "positive")


def test_wrong_column_type_becomes_row_errors(task):
    pre = preprocess_stage(task, keep=["id"])
    out = pre(pa.table({"id": ["a", "b"], "body": [1, 2]}))
    assert out.column(error_column("text-classification")).to_pylist() == ["input: expected text as str, got int"] * 2


def test_inline_forward_equals_preprocess_then_forward(task, monkeypatch):
    """Forward with preprocess=True is Preprocess + Forward in one actor: same columns, same
    results; it drops only the input columns it is told to (a later task may need the rest),
    and hands the features over without pickling them."""
    from types import SimpleNamespace

    import pipelines.offline.stages as stages

    names = {"label": "label", "score": "score", "scores": "scores", "error": "error"}
    table = pa.table({"id": ["a", "b", "c"], "body": ["one text", "", "another text"], "other": [1, 2, 3]})
    two_stage = forward_stage(task, names)(preprocess_stage(task, keep=["id"])(table))
    inline = forward_stage(task, names, preprocess=True, drop=("body", "other"))
    monkeypatch.setattr(stages, "pickle", SimpleNamespace())  # no dumps or loads to call
    assert inline(table).to_pylist() == two_stage.to_pylist()
    passed_on = forward_stage(task, names, preprocess=True)(table)
    assert passed_on.column_names == ["id", "body", "other", "label", "score", "scores", "error"]


def test_weights_load_while_the_first_block_decodes_and_a_failed_load_fails_the_block(task, tmp_path, monkeypatch):
    """The constructor returns before the weights are in (the first block tokenizes
    meanwhile) but after the processor and config checks; a weights file that does not load
    fails the first call, naming the model, instead of every row."""
    import shutil
    import threading

    names = {"label": "label", "score": "score", "scores": "scores", "error": "error"}
    table = pa.table({"id": ["a"], "body": ["one text"]})
    gate = threading.Event()
    from operators.runtime import OperatorRunner

    original = OperatorRunner._load
    monkeypatch.setattr(OperatorRunner, "_load", lambda self: (gate.wait(30), original(self)))
    stage = forward_stage(task, names, preprocess=True)  # returns with the weights still held back
    monkeypatch.undo()
    assert stage._op._processor is not None and not stage._runner.loaded
    gate.set()
    assert stage(table).column("label").to_pylist()[0] in ("negative", "neutral", "positive")

    broken = tmp_path / "broken"
    shutil.copytree(task.model, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not a safetensors file")
    bad = forward_stage(task.model_copy(update={"model": str(broken)}), names, preprocess=True)
    with pytest.raises(RuntimeError, match=f"failed to load model {broken}"):
        bad(table)


def test_forward_calls_run_forwards_at_once_and_match_one_at_a_time(tiny_model):
    """forward_calls=2: two calls on one Forward that decodes inline are inside the operator's
    forward at the same time, with the results of running them one at a time."""
    import io

    import numpy as np
    import soundfile as sf

    def clip(seconds: float, seed: int) -> bytes:
        buffer = io.BytesIO()
        wave = np.random.default_rng(seed).uniform(-0.5, 0.5, int(16_000 * seconds)).astype(np.float32)
        sf.write(buffer, wave, 16_000, format="WAV", subtype="PCM_16")
        return buffer.getvalue()

    spec = TaskSpec(task="automatic-speech-recognition", model=tiny_model("automatic-speech-recognition"))
    names = {"text": "text", "error": "error"}
    tables = [pa.table({"id": [f"{i}a", f"{i}b"], "audio": [clip(0.5 + i, i), b"not audio"]}) for i in range(2)]
    alone = forward_stage(spec, names, forward_calls=2, preprocess=True)
    want = [alone(t).to_pylist() for t in tables]

    assert call_at_once(forward_stage(spec, names, forward_calls=2, preprocess=True), tables) == want
    assert want[0][1]["error"] and want[0][0]["error"] is None


def test_text_forward_calls_share_the_tokenizer_one_call_at_a_time(task):
    """Text with forward_calls=2: both calls are in the model at once, tokenizing and
    postprocessing take turns (a shared fast tokenizer fails when threads use it at once),
    and the results are those of one call at a time."""
    import time

    names = {"label": "label", "score": "score", "scores": "scores", "error": "error"}
    tables = [pa.table({"id": [f"{i}a", f"{i}b"], "body": [f"text number {i} " * (i + 1), ""]}) for i in range(2)]
    want = [forward_stage(task, names, forward_calls=2, preprocess=True)(t).to_pylist() for t in tables]
    stage = forward_stage(task, names, forward_calls=2, preprocess=True)
    inside_tokenizer, preprocess = [], stage._op.preprocess

    def preprocess_alone(batch):
        inside_tokenizer.append(1)
        assert len(inside_tokenizer) == 1, "two calls tokenized at once"
        time.sleep(0.2)  # both calls start together: without the lock they would overlap here
        try:
            return preprocess(batch)
        finally:
            inside_tokenizer.pop()

    stage._op.preprocess = preprocess_alone
    assert call_at_once(stage, tables) == want
    assert want[0][1]["error"] and want[0][0]["error"] is None


def test_forward_calls_give_a_lone_call_the_idle_threads(task, monkeypatch):
    """forward_calls=2 with 1 torch thread each: a call alone in the model runs its
    micro-batches on both threads, two calls at once on one each (operators/threads.py)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from operators import get_operator

    threads_seen: list[int] = []
    both_recorded: list[threading.Barrier] = []  # set for the two calls at once
    cls = get_operator(task.task)
    forward_batch = cls.forward_batch

    def recording(self, features):
        threads_seen.append(torch.get_num_threads())
        for barrier in both_recorded:  # neither call leaves the model before both recorded
            barrier.wait()
        return forward_batch(self, features)

    monkeypatch.setattr(cls, "forward_batch", recording)
    names = {"label": "label", "score": "score", "scores": "scores", "error": "error"}
    tables = [pa.table({"id": [f"{i}a"], "body": [f"text number {i}"]}) for i in range(2)]
    stage = forward_stage(task, names, torch_threads=1, forward_calls=2, preprocess=True)
    with ThreadPoolExecutor(1) as pool:  # its own thread: torch's count is per thread
        alone = pool.submit(stage, tables[0]).result().to_pylist()
    assert threads_seen == [2]
    threads_seen.clear()
    both_recorded.append(threading.Barrier(2, timeout=30))
    together = call_at_once(stage, tables)
    assert threads_seen == [1, 1]
    assert together[0] == alone


def test_job_data_context_sets_the_job_settings_and_restores_them_after_a_failure():
    from ray.data import DataContext

    from pipelines.offline.job import STREAMING_GEN_BUFFER_BLOCKS, job_data_context

    ctx = DataContext.get_current()
    names = ("checkpoint_config", "target_max_block_size", "target_min_block_size", "_max_num_blocks_in_streaming_gen_buffer")
    before = {name: getattr(ctx, name) for name in names}
    with pytest.raises(RuntimeError, match="boom"):
        with job_data_context(block_bytes=4096) as inside:
            assert inside is ctx
            assert ctx.target_max_block_size == 4096
            assert ctx.target_min_block_size <= 4096
            assert ctx.checkpoint_config is None
            # A forward call's results span several small blocks; Ray's default of 2 made the
            # actor wait for the driver between calls.
            assert ctx._max_num_blocks_in_streaming_gen_buffer >= STREAMING_GEN_BUFFER_BLOCKS > 2
            raise RuntimeError("boom")
    assert {name: getattr(ctx, name) for name in names} == before


def test_a_block_whose_rows_all_failed_has_the_declared_types(task):
    """Result columns take the operator's declared Arrow types (Operator.output_schema), not
    what Arrow infers from the values: an all-failed block is typed as any other, so every file
    of a job has one schema by construction."""
    names = {"label": "label", "score": "score", "scores": "scores", "error": "error"}
    stage = forward_stage(task, names, preprocess=True)
    failed = stage(pa.table({"id": ["a", "b"], "body": pa.array([None, None], pa.string())}))
    fine = stage(pa.table({"id": ["c"], "body": ["a fine text"]}))
    assert failed.column("error").null_count == 0 and failed.column("label").null_count == 2
    assert failed.schema == fine.schema
    assert failed.schema.field("scores").type == pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))


def test_a_result_that_leaves_its_declared_type_is_refused():
    """Arrow drops a dict key its struct does not declare without a word; the stage refuses it."""
    from pipelines.offline.stages import _to_arrow

    ranked = pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
    assert _to_arrow([None, [{"label": "a", "score": 0.5}]], "scores", ranked).type == ranked
    with pytest.raises(TypeError, match="keys \\['label', 'rank', 'score'\\] are not the declared"):
        _to_arrow([[{"label": "a", "score": 0.5, "rank": 1}]], "scores", ranked)
