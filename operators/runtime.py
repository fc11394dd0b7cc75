"""One operator runtime for every path: what builds an operator (OperatorSpec, build_operator)
and how a serving process holds one (OperatorRunner). A Ray Data forward actor
(pipelines/offline/stages.py Forward) and a Serve replica (pipelines/serve/app.py) are thin adapters
around the same runner; neither builds, loads or threads an operator its own way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from operators.base import MEDIA_ROLES
from operators.threads import ThreadShare

if TYPE_CHECKING:
    from operators.base import Operator


class OperatorSpec(BaseModel):
    """What builds one operator: the task, the checkpoint and how it loads, and the options.
    A job's task (pipelines/spec.py TaskSpec) and a Serve endpoint's args (pipelines/serve/
    config.py EndpointArgs) are OperatorSpecs with the fields of their path added."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(..., description="Transformers task id, e.g. text-classification (see `taskray tasks`).")
    model: str = Field(..., description="Hub id or local model directory.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of the model.")
    trust_remote_code: bool = Field(False, description="Allow model code from the hub. Off by default for safety.")
    device: str = Field(
        "auto",
        description="auto | cpu | cuda | cuda:N. auto: CUDA where torch can use it, else the CPU; asking for a "
        "GPU (cuda, or GPUs given to the process) where torch cannot use CUDA fails before any row is read.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Weight dtype; auto is bf16/fp16 on GPU and fp32 on CPU."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Operator options (top_k, threshold, ...), checked against the operator's Options."
    )

    @field_validator("task")
    @classmethod
    def _known_task(cls, task: str) -> str:
        from operators import get_operator

        get_operator(task)  # raises ValueError naming the known tasks
        return task


def build_operator(spec: OperatorSpec, defaults: Mapping[str, Any] | None = None) -> "Operator":
    """The operator of `spec`, nothing loaded. `defaults`: options under the spec's own (a Serve
    endpoint's start from the operator's endpoint_defaults)."""
    from operators import get_operator

    return get_operator(spec.task)(
        spec.model,
        device=spec.device,
        dtype=spec.dtype,
        revision=spec.revision,
        trust_remote_code=spec.trust_remote_code,
        **{**(defaults or {}), **spec.options},
    )


class OperatorRunner:
    """One operator as a serving process holds it.

    - The configuration is checked and the processor loaded before the constructor returns, so
      a bad setting fails the process at once; the weights load in a background thread
      (`load_in_background`), so the first inputs decode and tokenize meanwhile, and a weights
      load that fails fails the first forward, naming the model.
    - `calls` forward calls may run at once, each on `torch_threads` threads; one running alone
      takes the idle threads of the others (operators/threads.py).
    - A fast tokenizer cannot be shared freely by threads (one that sets its truncation while
      another encodes or decodes with the GIL released fails "Already borrowed"): text
      preprocess and postprocess (decode) run one call at a time. Image and audio decoding
      shares nothing and releases the GIL, so it runs unlocked.
    """

    def __init__(
        self, op: "Operator", *, torch_threads: int | None = 1, calls: int = 1, load_in_background: bool = False
    ):
        """`torch_threads` None: the process's thread count as it is."""
        import torch

        # Ray sets OMP_NUM_THREADS from num_cpus for actors (1 below one CPU), and torch may
        # already have picked its thread count at import: make it explicit.
        if torch_threads is not None:
            torch.set_num_threads(max(1, torch_threads))
        torch_threads = torch.get_num_threads()
        self.op = op
        op.checked()
        _ = op.processor  # preprocess needs it now; a bad processor fails here
        self._threads = ThreadShare(max(1, torch_threads), calls)
        op.share_threads(self._threads if calls > 1 else None)
        self._slots = threading.Semaphore(calls)
        self._tokenizer_lock = contextlib.nullcontext() if set(op.input_roles) <= MEDIA_ROLES else threading.Lock()
        self._loaded = threading.Event()
        self._load_error: BaseException | None = None
        if load_in_background:
            threading.Thread(target=self._load, name=f"load-{op.task}", daemon=True).start()
        else:
            self._load()
            self.wait_until_loaded()

    def _load(self) -> None:
        try:
            self.op.load()  # the checks and the processor are done: this loads the weights
        except BaseException as e:  # kept for the forward calls to raise: this thread has no caller
            self._load_error = e
        finally:
            self._loaded.set()

    @property
    def loaded(self) -> bool:
        return self._loaded.is_set()

    def wait_until_loaded(self) -> None:
        self._loaded.wait()
        if self._load_error is not None:
            e = self._load_error
            raise RuntimeError(f"{self.op.task}: failed to load model {self.op.model_id}: {type(e).__name__}: {e}") from e

    def preprocess(self, batch: Mapping[str, Any], op: "Operator | None" = None) -> dict[str, list]:
        with self._tokenizer_lock:
            return (op or self.op).preprocess(batch)

    def forward_postprocess(self, prepared: Mapping[str, Any], op: "Operator | None" = None) -> dict[str, list]:
        """Forward (in one of the `calls` slots, on its share of the threads) and postprocess."""
        op = op or self.op
        self.wait_until_loaded()
        with self._slots, self._threads.running():
            raw = op.forward(prepared)
        with self._tokenizer_lock:
            return op.postprocess(raw, prepared)

    def __call__(self, batch: Mapping[str, Any], **options: Any) -> dict[str, list]:
        """The operator's call on `batch`, with per-call `options` (a with_options copy that
        shares the loaded model): the columns, one row out per row in."""
        op = self.op.with_options(**options)
        return self.forward_postprocess(self.preprocess(batch, op), op)
