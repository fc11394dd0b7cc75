"""The operator contract shared by every task: preprocess (CPU), forward (device), postprocess (CPU).

A task subclass implements four small hooks and inherits everything else:

* `check_row(row)`       validate types and decode media for one row (raise RowError)
* `preprocess_rows(rows)` features for a list of checked rows (tokenizer / processor calls)
* `forward_batch(feats)`  one padded micro-batch through the model; raw per-row outputs
* `postprocess_row(raw, feats)` the result columns for one row

Tasks where one row becomes several model inputs (question-answering windows, speech
recognition chunks) also implement the fan-out pair, as transformers' ChunkPipeline does:

* `row_pieces(feats)`     the model inputs of one row (default: the row itself)
* `merge_pieces(outputs, feats)` one row's raw output from its pieces' outputs, in order

The base plans micro-batches over the pieces of all rows together, so pieces of different
rows share micro-batches, and a failed piece fails only its own row.

The base class owns ordering, per-row errors, micro-batch planning, device moves and
`torch.inference_mode()`. The data between stages is a dict of columns:

    prepared = {"features": [dict | None, ...], "error": [str | None, ...]}
    raw      = {"raw": [Any | None, ...],      "error": [str | None, ...]}

Features are compact and unpadded (token ids, uint8 pixels, float32 waveforms); padding
happens in `forward`, next to the model.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from operators.batching import budget_batches
from operators.errors import RowError, describe, option_error, row_error
from operators.loading import LoadOptions, check_dtype, load_model, load_processor, resolve_device, resolve_dtype
from operators.out_of_memory import MicroBatchScale, free_device_memory, is_out_of_memory
from operators.results import LabelSource, ResponseShape, fields

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

INPUT_ROLES = ("text", "image", "audio", "question", "context")
# Roles that arrive as encoded bytes (PIL, soundfile decode them, releasing the GIL); the
# others are text that a tokenizer reads.
MEDIA_ROLES = frozenset({"image", "audio"})


# Named kernels only: transformers also takes "org/repo" as an attention implementation and
# then downloads and runs that repository's code, which trust_remote_code=False would not stop.
AttentionKernel = Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"]


# The role of an option, in its field's metadata (`role` in json_schema_extra):
# - "request" (the default): what a row's answer means (top_k, threshold, max_new_tokens...);
#   a job task's options or a Serve request's `parameters` may set it.
# - "server": bounds the server's own work (micro-batch planning, input size limits); a job or
#   an endpoint sets it, a request may not.
# - "model": decides how the model is built; fixed when the model loads (with_options copies
#   share it), so a request may not change it either.
OPTION_ROLES = ("request", "server", "model")


def server_option(default: Any, **field: Any) -> Any:
    """A field whose role is "server" (see OPTION_ROLES)."""
    return Field(default, json_schema_extra={"role": "server"}, **field)


def model_option(default: Any, **field: Any) -> Any:
    """A field whose role is "model" (see OPTION_ROLES)."""
    return Field(default, json_schema_extra={"role": "model"}, **field)


class OperatorOptions(BaseModel):
    """Options every operator accepts. Task operators subclass this with their own fields,
    each with its role (OPTION_ROLES)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def with_role(cls, *roles: str) -> frozenset[str]:
        """The names of the fields whose role is one of `roles`."""
        unknown = set(roles) - set(OPTION_ROLES)
        if unknown:
            raise ValueError(f"unknown option roles {sorted(unknown)}; roles are {OPTION_ROLES}")
        return frozenset(
            name for name, field in cls.model_fields.items()
            if (field.json_schema_extra or {}).get("role", "request") in roles
        )

    max_batch_rows: int = server_option(
        64, ge=1, description="Most rows in one forward micro-batch."
    )
    batch_budget: int | None = server_option(
        None,
        ge=1,
        description="Padded size budget of one micro-batch: rows x longest row, in tokens. "
        "Bounds padding waste and memory for token inputs (audio uses max_batch_samples). "
        "Default: 512 per torch thread on the CPU, 16384 on CUDA.",
    )
    attn_implementation: AttentionKernel | None = model_option(
        None,
        description="transformers' attention kernel. Default: transformers' choice, SDPA where "
        "the model supports it (all the tasks' families but GLPN and Mask2Former), else eager.",
    )
    torch_compile: bool = model_option(
        False,
        description="Compile the model's forward with torch.compile (dynamic shapes, Inductor). "
        "Each process's first calls wait while it compiles (MiniLM on 2 CPU cores: 9-14 s); on "
        "the CPU it needs a C++ compiler.",
    )


# Measured with all-MiniLM-L6-v2 on 2 CPU cores (benchmarks/RESULTS.md): 16384 tokens per
# micro-batch cost 50 ms/row, 1024 cost 21 ms/row, because attention memory (rows x heads x
# len^2) falls out of cache. The best size grows with the threads that share a micro-batch:
# on 2 threads 1024 beat 512 (136 vs 134 rows/s), on 1 thread 512 beat 1024 (162 vs 155 rows/s
# for two 1-thread calls). So the CPU budget is per thread of the calling thread's count.
# GPUs want large batches to fill their cores.
CPU_TOKENS_PER_THREAD = 512
CUDA_TOKEN_BUDGET = 16384


class Operator:
    """Base class of all task operators. See the module docstring for the contract."""

    task: ClassVar[str] = ""
    modality: ClassVar[str] = ""  # "text" | "image" | "audio"
    input_roles: ClassVar[tuple[str, ...]] = ()
    output_columns: ClassVar[tuple[str, ...]] = ()  # result columns, "error" excluded
    # The Arrow type of each result column (operators/results.py); `output_schema()` reads it
    # (tasks whose types follow an option override `output_types_for`).
    output_types: ClassVar[Mapping[str, "pa.DataType"]] = {}
    # The answer to one input over HTTP, shaped as pipeline() returns it (operators/results.py).
    # None: every result column, as an object.
    response: ClassVar[ResponseShape | None] = None
    # Where the HF Inference API's defaults differ from pipeline()'s (which the options follow),
    # a Serve endpoint starts from these; its `options`, then a request's parameters, override them.
    endpoint_defaults: ClassVar[dict[str, Any]] = {}
    # Whether a row's results are larger than its input (embeddings: 11x the text's bytes), so
    # that an offline job sizes its blocks by more than the input rows' bytes (pipelines/hardware.py).
    results_outgrow_inputs: ClassVar[bool] = False
    # Where its labels and scores are, for the report's charts (operators/results.py); None: no labels.
    label_source: ClassVar[LabelSource | None] = None
    auto_model: ClassVar[str] = "AutoModel"
    processor_kind: ClassVar[str] = "tokenizer"
    Options: ClassVar[type[OperatorOptions]] = OperatorOptions
    # Rows an offline forward actor takes per call (TaskSpec.batch_size default). The
    # micro-batch planner sorts within one call, so more rows pad less: MiniLM on 1 thread ran
    # 39 rows/s at 64 rows per call and 58 at 256 (benchmarks/RESULTS.md). Media rows are
    # larger in the object store, so they keep 64.
    rows_per_call: ClassVar[int] = 64

    @classmethod
    def output_types_for(cls, options: OperatorOptions) -> Mapping[str, "pa.DataType"]:
        """The result columns' Arrow types under `options`."""
        return cls.output_types

    @classmethod
    def output_schema_for(cls, options: Mapping[str, Any] | OperatorOptions) -> "pa.Schema":
        """The result columns and `error`, typed: what an offline job writes for this task with
        these options, the same in every file whatever its rows (a block whose rows all failed
        included). A class method: a job plans it before any checkpoint is read."""
        import pyarrow as pa

        if not isinstance(options, OperatorOptions):
            options = cls.Options(**options)
        types = cls.output_types_for(options)
        missing = [c for c in cls.output_columns if c not in types]
        if missing:
            raise TypeError(f"{cls.__name__} declares no Arrow type for its result columns {missing}")
        return pa.schema([*((c, types[c]) for c in cls.output_columns), ("error", pa.string())])

    def output_schema(self) -> "pa.Schema":
        """`output_schema_for` this operator's options."""
        return self.output_schema_for(self.options)

    def share_threads(self, share: "ThreadShare | None") -> None:  # noqa: F821
        """Run each micro-batch on the calling thread's share of `share`'s torch threads
        (operators/threads.py), refitted before every micro-batch: a process that runs several
        forward calls at once (OperatorRunner) gives a call running alone the idle threads."""
        self._thread_share = share

    @classmethod
    def response_shape(cls) -> ResponseShape:
        return cls.response or ResponseShape(fields(*cls.output_columns))

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        revision: str | None = None,
        trust_remote_code: bool = False,
        **options: Any,
    ):
        self.load_options = LoadOptions(
            model=str(model), revision=revision, trust_remote_code=trust_remote_code
        )
        self.options = self.Options(**options)
        self._device_arg = device
        self._dtype_arg = dtype
        self._processor = None
        self._model = None
        self._device = None
        self._dtype = None
        self._config_checked = False
        self._thread_share = None  # see share_threads
        # Lowered after a device OOM; shared with with_options copies (one model, one memory).
        self._batch_scale = MicroBatchScale()

    # ------------------------------------------------------------------ loading

    @property
    def model_id(self) -> str:
        return self.load_options.model

    @property
    def processor(self):
        """Tokenizer / feature extractor / image processor. Loads without any weights."""
        if self._processor is None:
            self._processor = self.build_processor()
        return self._processor

    @property
    def device(self):
        if self._device is None:
            self._device = resolve_device(self._device_arg)
        return self._device

    @property
    def dtype(self):
        if self._dtype is None:
            self._dtype = resolve_dtype(self._dtype_arg, self.device)
        return self._dtype

    @property
    def model(self):
        """The weights, loaded on first use. CPU-only stages never touch this."""
        if self._model is None:
            # Here, not in check_config(): the job driver that runs check_config() may sit on
            # another CPU than the actors that run the model.
            check_dtype(self.device, self.dtype, self.model_id)
            model = self.build_model()
            if self.options.torch_compile:
                # In place (nn.Module.compile): the model keeps its class, so config,
                # generate() and the parameters read as before; its __call__ is compiled.
                # Dynamic shapes, since every micro-batch has its own length.
                model.compile(dynamic=True)
            self._model = model
        return self._model

    def load(self) -> "Operator":
        """Check the configuration, then load processor and weights now (actor constructors
        call this to fail fast)."""
        self.checked()
        _ = self.processor, self.model
        return self

    def checked(self) -> "Operator":
        """Check the configuration now, without weights (a front end that parses requests for
        a model elsewhere); from then on with_options() checks each request's options too."""
        self._check_config_once()
        return self

    @property
    def model_config(self):
        """The model config: the loaded model's, else read once from disk (no weights)."""
        if self._model is not None:
            return self._model.config
        if getattr(self, "_config", None) is None:
            from operators.loading import load_config

            self._config = load_config(self.load_options)
        return self._config

    def check_config(self) -> None:
        """Raise ValueError naming the option and the model for a configuration that would
        fail every row (an option the checkpoint cannot honour, a checkpoint that cannot run
        the task). Reads the processor and config, never weights. Runs in load(), before the
        first preprocess(), in with_options() of a checked operator, and in the job driver
        before any data is read, so a bad configuration fails the job or the Serve replica
        instead of each row. Tasks extend it, calling super().check_config() first."""
        self.check_architecture()

    def check_architecture(self, auto_classes: Sequence[str] | None = None) -> None:
        """The checkpoint's config class is one that the task's auto classes load (default:
        `auto_model`), as `AutoModelFor<X>.from_pretrained` would decide it, but from the config
        alone: a text-classification checkpoint given to object-detection fails here, before
        any weights are read or any row is processed."""
        import transformers

        config = self.model_config
        if self.load_options.trust_remote_code and getattr(config, "auto_map", None):
            return  # remote code registers its own classes; transformers' mappings cannot tell
        classes = tuple(auto_classes or (self.auto_model,))
        if any(type(config) in getattr(transformers, name)._model_mapping for name in classes):
            return
        raise ValueError(
            f"model {self.model_id!r} is a {config.model_type!r} checkpoint ({type(config).__name__}) that "
            f"{' or '.join(classes)} cannot load; task {self.task!r} needs a model of that kind"
        )

    def _check_config_once(self) -> None:
        if not self._config_checked:
            self.check_config()
            self._config_checked = True

    def build_processor(self):
        return load_processor(self.processor_kind, self.load_options)

    def build_model(self):
        return load_model(self.auto_model, self.load_options, self.device, self.dtype, **self.model_kwargs())

    def model_kwargs(self) -> dict[str, Any]:
        """Extra `from_pretrained` arguments from the options."""
        if self.options.attn_implementation is None:
            return {}
        return {"attn_implementation": self.options.attn_implementation}

    def with_options(self, **options: Any) -> "Operator":
        """A shallow copy with some options changed, sharing the loaded model and processor."""
        if not options:
            return self
        for name in self.Options.with_role("model") & options.keys():
            if options[name] != getattr(self.options, name):
                # The copy shares the loaded model, which these options built.
                raise option_error(
                    self.Options, name, options[name],
                    f"{name} is fixed when the model loads ({getattr(self.options, name)!r} for "
                    f"{self.model_id}); it cannot change per request",
                )
        clone = copy.copy(self)
        clone.options = self.Options(**{**self.options.model_dump(), **options})
        if self._config_checked:
            clone.check_config()  # a request's bad option is its own error (Serve: 422)
        return clone

    @classmethod
    def describe(cls) -> dict[str, Any]:
        return {
            "task": cls.task,
            "modality": cls.modality,
            "inputs": list(cls.input_roles),
            "outputs": [*cls.output_columns, "error"],
        }

    def labels(self) -> list[str] | None:
        """The model's class labels, where the task has them."""
        config = getattr(self._model, "config", None)
        if config is None:
            from operators.loading import load_config

            config = load_config(self.load_options)
        id2label = getattr(config, "id2label", None) or {}
        return [id2label[i] for i in sorted(id2label)] if id2label else None

    # ------------------------------------------------------------------ hooks

    def check_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Validate and decode one row; raise RowError("input"|"decode", ...). Default: as-is."""
        return row

    def preprocess_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def row_length(self, features: dict[str, Any]) -> int:
        """The length of one piece, used to plan micro-batches (tokens, or audio frames)."""
        return len(features["input_ids"])

    @property
    def token_budget(self) -> int:
        """The micro-batch budget in tokens: the option, else the device's default (on the
        CPU, per torch thread that the calling thread computes on)."""
        if self.options.batch_budget:
            return self.options.batch_budget
        if self.device.type == "cpu":
            import torch

            return CPU_TOKENS_PER_THREAD * torch.get_num_threads()
        return CUDA_TOKEN_BUDGET

    def plan_batches(self, features: list[dict[str, Any]]) -> list[list[int]]:
        """Micro-batches as lists of positions into `features` (the pieces of all rows; see
        `row_pieces`). Default: token budget."""
        return budget_batches(
            [self.row_length(f) for f in features],
            self.token_budget,
            self.options.max_batch_rows,
        )

    def row_pieces(self, features: dict[str, Any]) -> list[dict[str, Any]]:
        """The model inputs that one row's features fan out into. `plan_batches` and
        `forward_batch` see pieces. Default: one piece, the features themselves."""
        return [features]

    def merge_pieces(self, outputs: list[Any], features: dict[str, Any]) -> Any:
        """One row's raw output from its pieces' `forward_batch` outputs, in piece order.
        Default: the output of the row's single piece."""
        if len(outputs) != 1:
            raise RuntimeError(f"{type(self).__name__} has {len(outputs)} pieces for one row; override merge_pieces")
        return outputs[0]

    def forward_batch(self, features: list[dict[str, Any]]) -> list[Any]:
        raise NotImplementedError

    def postprocess_row(self, raw: Any, features: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    # ------------------------------------------------------------------ device helpers

    @staticmethod
    def host_rows(tensor: "torch.Tensor", lengths: Sequence[int] | None = None) -> list[np.ndarray]:  # noqa: F821
        """A batched model output brought to the host in one copy, as one numpy array per row:
        floats as float32 (bf16 and fp16 have no numpy dtype), integers as they are. `lengths`
        cuts each row to its own length: the positions a row alone would not have (padding).
        Every task's forward_batch returns its rows through this, so none moves data itself."""
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = tensor.float()
        array = tensor.cpu().numpy()
        if lengths is None:
            return [array[i] for i in range(array.shape[0])]
        return [array[i, :n] for i, n in enumerate(lengths)]

    def to_device(self, array: np.ndarray | "torch.Tensor", *, float_dtype: bool = False):  # noqa: F821
        """Move a host array to the model's device. On CUDA: pinned host memory and a
        non-blocking copy, so the copy overlaps with the previous kernel."""
        import torch

        tensor = torch.as_tensor(array)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        else:
            tensor = tensor.to(self.device)
        if float_dtype:
            tensor = tensor.to(self.dtype)
        return tensor

    # ------------------------------------------------------------------ the three stages

    def preprocess(self, batch: Mapping[str, Any]) -> dict[str, list]:
        """Stage 1 (CPU): decode and tokenize. One entry per input row, errors included."""
        self._check_config_once()  # a bad option fails the call, not every row
        rows = self._rows(batch)
        n = len(rows)
        errors: list[str | None] = [None] * n
        features: list[dict[str, Any] | None] = [None] * n
        ok: list[int] = []
        for i, row in enumerate(rows):
            try:
                rows[i] = self.check_row(row)
                ok.append(i)
            except Exception as e:  # one bad row must not fail its neighbours
                errors[i] = row_error("input", e)
        for i, result in zip(ok, self._preprocess_isolated([rows[i] for i in ok])):
            if isinstance(result, BaseException):
                errors[i] = row_error("preprocess", result)
            else:
                features[i] = result
        return {"features": features, "error": errors}

    def forward(self, prepared: Mapping[str, Sequence]) -> dict[str, list]:
        """Stage 2 (device): micro-batch, pad, run the model. The only stage that touches it."""
        import torch

        features = list(prepared["features"])
        errors = list(prepared["error"])
        raw: list[Any] = [None] * len(features)
        ok = [i for i, e in enumerate(errors) if e is None and features[i] is not None]
        if not ok:
            return {"raw": raw, "error": errors}
        # Load outside the per-batch isolation: a model that cannot load fails the call,
        # it does not turn every row into an error.
        _ = self.model
        pieces: list[dict[str, Any]] = []
        owners: list[int] = []  # the row of each piece
        for i in ok:
            try:
                row_pieces = self.row_pieces(features[i])
                if not row_pieces:
                    raise RuntimeError("the row has no model inputs")
            except Exception as e:  # one bad row must not fail its neighbours
                errors[i] = row_error("forward", e)
                continue
            pieces.extend(row_pieces)
            owners.extend([i] * len(row_pieces))
        outputs: list[Any] = [None] * len(pieces)
        with torch.inference_mode():
            for positions in self.plan_batches(pieces):
                for p, result in zip(positions, self._forward_isolated([pieces[p] for p in positions])):
                    outputs[p] = result
        per_row: dict[int, list[Any]] = {}
        for i, result in zip(owners, outputs):
            per_row.setdefault(i, []).append(result)
        for i, results in per_row.items():
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                errors[i] = row_error("forward", failed)
                continue
            try:
                raw[i] = self.merge_pieces(results, features[i])
            except Exception as e:  # isolate the row
                errors[i] = row_error("forward", e)
        return {"raw": raw, "error": errors}

    def postprocess(self, raw: Mapping[str, Sequence], prepared: Mapping[str, Sequence]) -> dict[str, list]:
        """Stage 3 (CPU): plain Python values named as transformers.pipeline names them."""
        n = len(raw["raw"])
        out: dict[str, list] = {c: [None] * n for c in self.output_columns}
        errors = list(raw["error"])
        for i in range(n):
            if errors[i] is not None:
                continue
            try:
                row = self.postprocess_row(raw["raw"][i], prepared["features"][i])
            except Exception as e:  # isolate the row
                errors[i] = row_error("postprocess", e)
                continue
            for column in self.output_columns:
                out[column][i] = row.get(column)
        out["error"] = errors
        return out

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list]:
        prepared = self.preprocess(batch)
        return self.postprocess(self.forward(prepared), prepared)

    # ------------------------------------------------------------------ internals

    def _rows(self, batch: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"batch must be a mapping of input role -> values, got {type(batch).__name__}")
        missing = [r for r in self.input_roles if r not in batch]
        if missing:
            raise ValueError(
                f"Required input keys {missing} not found at the input of "
                f"{type(self).__name__}. Input keys: {sorted(batch)}"
            )
        columns = {r: _as_list(batch[r], r) for r in self.input_roles}
        lengths = {r: len(v) for r, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"input columns differ in length: {lengths}")
        n = next(iter(lengths.values()), 0)
        return [{r: columns[r][i] for r in self.input_roles} for i in range(n)]

    def _preprocess_isolated(self, rows: list[dict[str, Any]]) -> list[Any]:
        """Preprocess all rows at once (fast tokenizers batch well); if that fails, retry one
        row at a time so that only the rows that really fail are marked."""
        if not rows:
            return []
        try:
            results = self.preprocess_rows(rows)
            if len(results) != len(rows):
                raise RuntimeError(f"preprocess_rows returned {len(results)} rows for {len(rows)}")
            return results
        except Exception:  # fall back to one row at a time below
            pass
        return [_first_or_exception(self.preprocess_rows, [row]) for row in rows]

    def _forward_isolated(self, features: list[dict[str, Any]]) -> list[Any]:
        """One planned micro-batch through `forward_batch`: a result or an exception per piece.

        Runs it in sub-batches of the operator's lowered budget (operators/out_of_memory.py)
        once a device OOM has lowered it."""
        size = self._batch_scale.rows(len(features))
        results: list[Any] = []
        for start in range(0, len(features), size):
            results.extend(self._forward_split(features[start : start + size], len(features)))
        return results

    def _forward_split(self, features: list[dict[str, Any]], planned: int) -> list[Any]:
        """A device OOM halves the batch and retries each half (only a row that runs out of
        memory alone fails, as `oom`); any other failure is retried row by row to isolate it."""
        oom = None
        try:
            if self._thread_share is not None:
                self._thread_share.fit()  # this call's share of the threads, as of now
            results = self.forward_batch(features)
            if len(results) != len(features):
                raise RuntimeError(f"forward_batch returned {len(results)} rows for {len(features)}")
            return results
        except Exception as e:  # a failed micro-batch is split or retried row by row below
            if is_out_of_memory(e):
                oom = describe(e)
            elif len(features) == 1:
                return [e]
            else:
                logger.warning("micro-batch of %d failed (%s); retrying row by row", len(features), e)
        if oom is None:
            return [self._forward_split([f], planned)[0] for f in features]
        # Outside the except block: the exception's traceback held the batch's tensors.
        free_device_memory(self.device)
        if len(features) == 1:
            return [RowError("oom", f"out of device memory on this row alone ({oom})")]
        half = (len(features) + 1) // 2
        self._batch_scale.lower(half, planned)
        logger.warning("micro-batch of %d ran out of device memory; retrying in halves of %d", len(features), half)
        return self._forward_split(features[:half], planned) + self._forward_split(features[half:], planned)


def _as_list(values: Any, role: str) -> list:
    if isinstance(values, np.ndarray):
        return list(values)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        # pyarrow arrays and pandas series convert through to_pylist/tolist
        for attr in ("to_pylist", "tolist"):
            if hasattr(values, attr):
                return list(getattr(values, attr)())
        raise TypeError(f"input {role!r} must be a list of values, got {type(values).__name__}")
    return list(values)


def _first_or_exception(fn, rows):
    try:
        return fn(rows)[0]
    except Exception as e:  # returned, not raised: the caller records it per row
        return e
