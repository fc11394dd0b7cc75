"""Ray Data UDFs that adapt task operators to `map_batches` (batch_format="pyarrow").

    read -> Preprocess (CPU actor pool; processors only, never weights; GPU clusters)
         -> Forward[task 1] -> Forward[task 2] ... (actor pools; weights loaded once per actor)
         -> write_parquet

Between the stages each task carries two internal columns: `__features__<name>` holds each
row's compact, unpadded feature dict (token ids, uint8 pixels, float32 waveforms) serialized
with pickle protocol 5 (our own data between our own stages; numpy buffers go out-of-band
cheaply), and `__error__<name>` the row's preprocessing error. Forward drops both and adds
the task's result columns.

On CPU-only nodes (pipelines/hardware.py picks it) there is no Preprocess pool: Forward runs
the operator's preprocess inside the forward actor (`preprocess=True`) and hands the features
to forward as they are, with no internal columns. A separate pool costs a process start-up of
its own (ray.data, transformers, torch) on the cores the forward actor needs, and measured
slower on a 2-core node (benchmarks/RESULTS.md). On GPU nodes the pool stays: decoding in the
forward actor would leave the device waiting on it.

Postprocess is fused into Forward: every operator's postprocess needs the loaded model's
config (id2label, generation settings) and the raw outputs, which are often larger than the
final columns (logits, depth maps, mask scores). Shipping raw outputs to a separate CPU stage
would cost more object-store traffic than the postprocessing costs on the actor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import threading
from typing import TYPE_CHECKING, Any

from operators.base import MEDIA_ROLES
from operators.errors import error_kind
from pipelines.job_stats import JobStats  # noqa: F401  (its home before pipelines/job_stats.py)
from pipelines.torch_threads import ThreadShare

if TYPE_CHECKING:
    import pyarrow

    from pipelines.error_budget import ErrorBudget
    from pipelines.spec import TaskSpec

logger = logging.getLogger(__name__)

FEATURES_PREFIX = "__features__"
ERROR_PREFIX = "__error__"


def features_column(name: str) -> str:
    return f"{FEATURES_PREFIX}{name}"


def error_column(name: str) -> str:
    return f"{ERROR_PREFIX}{name}"


def build_operator(task: "TaskSpec"):
    """The operator of a task spec (nothing loaded yet)."""
    from operators import get_operator

    return get_operator(task.task)(
        task.model,
        device=task.device,
        dtype=task.dtype,
        revision=task.revision,
        trust_remote_code=task.trust_remote_code,
        **task.options,
    )


def preprocess_block(op, table: "pyarrow.Table", roles: dict[str, str]) -> dict[str, list]:
    """The operator's preprocess over one block: {"features", "error"}, one entry per row.
    `roles`: operator input role -> the table's column."""
    return op.preprocess({role: [media_value(v) for v in table.column(col).to_pylist()] for role, col in roles.items()})


def media_value(value: Any) -> Any:
    """An HF-datasets {bytes, path} cell becomes its bytes; a path-only cell stays a dict so
    the operator can read the path itself."""
    if isinstance(value, dict) and value.get("bytes") is not None:
        return value["bytes"]
    return value


class Preprocess:
    """CPU stage for all tasks of a job: decode + processor, one pass over each block.

    Drops the input columns that are not kept, so media bytes never reach the forward actors.
    """

    def __init__(self, tasks: list["TaskSpec"], keep: list[str] | None):
        """`keep`: the input columns to pass on (None: all)."""
        self._tasks = [(t.column_prefix, t.role_columns(), build_operator(t)) for t in tasks]
        self._keep = keep
        for _, _, op in self._tasks:
            _ = op.processor  # load the processor now (never the weights) so failures surface early

    def __call__(self, table: "pyarrow.Table") -> "pyarrow.Table":
        import pyarrow as pa

        out = table if self._keep is None else table.select([c for c in self._keep if c in table.column_names])
        for name, roles, op in self._tasks:
            prepared = preprocess_block(op, table, roles)
            blobs = [None if f is None else pickle.dumps(f, protocol=5) for f in prepared["features"]]
            out = out.append_column(features_column(name), pa.array(blobs, pa.binary()))
            out = out.append_column(error_column(name), pa.array(prepared["error"], pa.string()))
        return out


class Forward:
    """Device stage of one task, run in an actor pool: the task's forward and postprocess, and
    with `preprocess=True` its preprocess first, in the same actor (CPU-only nodes: no
    Preprocess pool; see the module docstring). Reports rows per node to the job's stats actor.

    The weights load in a background thread started by the constructor, so the first blocks
    decode and tokenize while the model loads; forward waits for it. The processor and the
    configuration checks load before the constructor returns, so a bad setting fails the
    actor at once, and a weights load that fails fails the first block, naming the model.

    Ray Data may run several calls at once on this actor (`forward_calls` in the model, plus
    the calls decoding images or audio); at most `forward_calls` are in the model at a time,
    each on `torch_threads` threads, a call running alone taking the idle ones.
    `drop`: the input columns to drop once decoded, and `keep` the input columns to put first,
    in that order, as Preprocess does (the last task drops the inputs the job does not keep;
    earlier ones pass them on, since a later task needs its own inputs and the earlier tasks'
    results must stay).
    """

    def __init__(
        self,
        task: "TaskSpec",
        output_names: dict[str, str],
        *,
        torch_threads: int = 1,
        forward_calls: int = 1,
        preprocess: bool = False,
        drop: list[str] = (),
        keep: list[str] = (),
        stats=None,
    ):
        import torch

        # Ray sets OMP_NUM_THREADS from num_cpus for actors (1 below one CPU), and torch may
        # already have picked its thread count at import: make it explicit.
        torch.set_num_threads(max(1, torch_threads))
        self._name = task.column_prefix
        self._task = task.task
        self._op = build_operator(task)
        self._op._check_config_once()
        _ = self._op.processor  # preprocess needs it now; a bad processor fails the actor here
        self._model_loaded = threading.Event()
        self._load_error: BaseException | None = None
        threading.Thread(target=self._load_model, name=f"load-{self._name}", daemon=True).start()
        self._output_names = output_names  # result column (and "error") -> output column
        self._stats = stats
        self._node = _node_id()
        self._preprocess = preprocess
        self._roles = task.role_columns()
        self._drop = list(drop)
        self._keep = list(keep)
        self._forward_slots = threading.Semaphore(forward_calls)
        # With several calls, the threads of the calls not running go to those that are,
        # re-split before each micro-batch (pipelines/torch_threads.py); one call keeps its own.
        self._threads = ThreadShare(max(1, torch_threads), forward_calls)
        self._op.forward_batch = self._threads.around(self._op.forward_batch)
        # A fast tokenizer cannot be shared freely by threads: one that sets its truncation
        # while another encodes or decodes with the GIL released fails ("Already borrowed").
        # Text tasks tokenize and postprocess (decode) one call at a time (a small share of a
        # call); forward only reads token ids, which holds the GIL. Image and audio decoding
        # shares nothing and releases the GIL, so it runs unlocked.
        self._tokenizer_lock = contextlib.nullcontext() if media_only(task) else threading.Lock()
        logger.info("forward actor for %s on node %s, device %s", self._name, self._node, self._op.device)

    def _load_model(self) -> None:
        try:
            self._op.load()  # the checks and the processor are done: this loads the weights
        except BaseException as e:  # kept for the forward calls to raise: this thread has no caller
            self._load_error = e
        finally:
            self._model_loaded.set()

    def _wait_for_model(self) -> None:
        self._model_loaded.wait()
        if self._load_error is not None:
            e = self._load_error
            raise RuntimeError(f"task {self._name!r}: failed to load model {self._op.model_id}: {type(e).__name__}: {e}") from e

    def __call__(self, table: "pyarrow.Table") -> "pyarrow.Table":
        if self._preprocess:
            # The features go straight from preprocess to forward, with no pickled internal
            # column (for audio that column meant four copies of each clip's waveform).
            with self._tokenizer_lock:
                prepared = preprocess_block(self._op, table, self._roles)
            out = table.drop_columns([c for c in self._drop if c in table.column_names])
            first = [c for c in self._keep if c in out.column_names]
            return self.label(out.select([*first, *(c for c in out.column_names if c not in first)]), prepared)
        feats_col, err_col = features_column(self._name), error_column(self._name)
        blobs = table.column(feats_col).to_pylist()
        prepared = {
            "features": [None if b is None else pickle.loads(b) for b in blobs],
            "error": table.column(err_col).to_pylist(),
        }
        return self.label(table.drop_columns([feats_col, err_col]), prepared)

    def label(self, out: "pyarrow.Table", prepared: dict[str, list]) -> "pyarrow.Table":
        """Forward and postprocess `prepared` (the operator's preprocess output for the rows
        of `out`), and append the task's result columns to `out`."""
        import pyarrow as pa

        clash = [name for name in self._output_names.values() if name in out.column_names]
        if clash:  # Arrow would append a second column of the same name
            raise ValueError(f"task {self._name!r}: the input already has its result columns {clash}; give the task another name")
        self._wait_for_model()
        with self._forward_slots, self._threads.running():
            raw = self._op.forward(prepared)
        with self._tokenizer_lock:
            result = self._op.postprocess(raw, prepared)
        for column, name in self._output_names.items():
            values = result[column]
            if column == "error":
                array = pa.array(values, pa.string())
            else:
                array = _to_arrow(values, name, pa.list_(pa.float32()) if column in self._op.float32_columns else None)
            out = out.append_column(name, array)
        if self._stats is not None:
            kinds: dict[str, int] = {}
            examples: dict[str, str] = {}  # the first error of each kind, for the budget's message
            for e in result["error"]:
                if e is not None:
                    kinds[error_kind(e)] = kinds.get(error_kind(e), 0) + 1
                    examples.setdefault(error_kind(e), e)
            # Synchronous on purpose: a fire-and-forget call can be lost when the pool
            # shuts this actor down right after its last batch.
            import ray

            dtype = str(self._op.dtype).removeprefix("torch.")  # what the model computed in, for _SUCCESS
            verdict = ray.get(self._stats.add.remote(self._name, self._node, out.num_rows, kinds, examples, dtype))
            if verdict is not None:
                # Failing the block fails the dataset, so Ray Data stops reading and starting
                # blocks; the driver reads the verdict back from the stats actor.
                raise ErrorBudgetExceeded(verdict)
        return out


def media_only(task: "TaskSpec") -> bool:
    """Whether every input of the task is an image or audio (decoded by PIL or soundfile)."""
    return set(task.role_columns()) <= MEDIA_ROLES


def _to_arrow(values: list, name: str, arrow_type: "pyarrow.DataType | None" = None) -> "pyarrow.Array":
    import pyarrow as pa

    try:
        return pa.array(values, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        sample = next((v for v in values if v is not None), None)
        raise TypeError(f"result column {name!r} does not convert to Arrow (got {type(sample).__name__}): {e}") from e


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (unit tests call the UDFs directly)
        return os.uname().nodename


class ErrorBudgetExceeded(RuntimeError):
    """Raised in a forward actor when its task's failed rows pass the job's error budget."""
