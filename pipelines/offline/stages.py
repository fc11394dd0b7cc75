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

import logging
import os
import pickle
from typing import TYPE_CHECKING, Any

from operators.errors import error_kind
from operators.results import missing_or_extra_fields
from operators.runtime import OperatorRunner, build_operator

if TYPE_CHECKING:
    import pyarrow

logger = logging.getLogger(__name__)

FEATURES_PREFIX = "__features__"
ERROR_PREFIX = "__error__"


def features_column(name: str) -> str:
    return f"{FEATURES_PREFIX}{name}"


def error_column(name: str) -> str:
    return f"{ERROR_PREFIX}{name}"


def block_inputs(table: "pyarrow.Table", roles: dict[str, str]) -> dict[str, list]:
    """One block as an operator's input batch. `roles`: operator input role -> the table's column."""
    return {role: [media_value(v) for v in table.column(col).to_pylist()] for role, col in roles.items()}


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

    def __init__(self, tasks: list, keep: list[str] | None):
        """`tasks`: the ForwardPlans (pipelines/offline/plan.py) of the forward stages this pool feeds;
        `keep`: the input columns to pass on (None: all)."""
        self._tasks = [(t.name, t.roles, build_operator(t.operator)) for t in tasks]
        self._keep = keep
        for _, _, op in self._tasks:
            _ = op.processor  # load the processor now (never the weights) so failures surface early

    def __call__(self, table: "pyarrow.Table") -> "pyarrow.Table":
        import pyarrow as pa

        out = table if self._keep is None else table.select([c for c in self._keep if c in table.column_names])
        for name, roles, op in self._tasks:
            prepared = op.preprocess(block_inputs(table, roles))
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

    Everything it does comes from its `plan` (a pipelines/offline/plan.py ForwardPlan): the operator to
    build, the columns to read and write, the result types, the thread plan. Ray Data may run
    several calls at once on this actor (`forward_calls` in the model, plus the calls decoding
    images or audio); at most `forward_calls` are in the model at a time, each on
    `torch_threads` threads, a call running alone taking the idle ones. With `preprocess`,
    `drop` names the input columns to drop once decoded, and `keep` the input columns to put
    first, in that order, as Preprocess does (the last task drops the inputs the job does not
    keep; earlier ones pass them on, since a later task needs its own inputs and the earlier
    tasks' results must stay).
    """

    def __init__(self, plan, *, stats=None):
        self._name = plan.name
        # The configuration checks and the processor load now (a bad setting fails the actor
        # at once); the weights load in the background while the first blocks decode.
        self._runner = OperatorRunner(
            build_operator(plan.operator), torch_threads=plan.torch_threads, calls=plan.forward_calls,
            load_in_background=True,
        )
        self._op = self._runner.op
        self._output_names = plan.outputs  # result column (and "error") -> output column
        self._result_schema = plan.result_schema
        self._stats = stats
        self._node = _node_id()
        self._preprocess = plan.preprocess
        self._roles = plan.roles
        self._drop = list(plan.drop)
        self._keep = list(plan.keep)
        logger.info("forward actor for %s on node %s, device %s", self._name, self._node, self._op.device)

    def __call__(self, table: "pyarrow.Table") -> "pyarrow.Table":
        if self._preprocess:
            # The features go straight from preprocess to forward, with no pickled internal
            # column (for audio that column meant four copies of each clip's waveform).
            prepared = self._runner.preprocess(block_inputs(table, self._roles))
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
        clash = [name for name in self._output_names.values() if name in out.column_names]
        if clash:  # Arrow would append a second column of the same name
            raise ValueError(f"task {self._name!r}: the input already has its result columns {clash}; give the task another name")
        result = self._runner.forward_postprocess(prepared)
        for column, name in self._output_names.items():
            out = out.append_column(name, _to_arrow(result[column], name, self._result_schema.field(column).type))
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


def _to_arrow(values: list, name: str, arrow_type: "pyarrow.DataType") -> "pyarrow.Array":
    """A result column as its declared Arrow type (the operator's output_schema)."""
    import pyarrow as pa

    sample = next((v for v in values if v is not None), None)
    problem = missing_or_extra_fields(sample, arrow_type)
    if problem:  # Arrow would drop an undeclared key without a word
        raise TypeError(f"result column {name!r} does not match its declared type {arrow_type}: {problem}")
    try:
        return pa.array(values, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise TypeError(f"result column {name!r} does not convert to {arrow_type} (got {type(sample).__name__}): {e}") from e


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (unit tests call the UDFs directly)
        return os.uname().nodename


class ErrorBudgetExceeded(RuntimeError):
    """Raised in a forward actor when its task's failed rows pass the job's error budget."""
