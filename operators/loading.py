"""Device, dtype and weight loading, with the safety defaults in one place.

Safetensors only and trust_remote_code=False unless the caller opts in. A local directory is
loaded with local_files_only=True so that nothing touches the network.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class LoadOptions:
    """Where the weights come from and how they are trusted."""

    model: str
    revision: str | None = None
    trust_remote_code: bool = False
    use_safetensors: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, os.PathLike)) or not str(self.model):
            raise TypeError(f"model must be a hub id or a directory, got {self.model!r}")

    @property
    def is_local(self) -> bool:
        return os.path.isdir(str(self.model))

    def hub_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"trust_remote_code": self.trust_remote_code}
        if self.is_local:
            kwargs["local_files_only"] = True
        elif self.revision is not None:
            kwargs["revision"] = self.revision
        return kwargs


class CudaUnavailableError(RuntimeError):
    """A GPU was asked for (device cuda, or a GPU that Ray assigned to this process) and torch
    cannot use CUDA. Raised, never warned about: a GPU job that quietly runs on the CPU
    "succeeds" 50x slower."""


# CUDA_VISIBLE_DEVICES values that assign no GPU (CUDA's own ways of hiding every device).
_NO_GPU_ASSIGNED = ("", "-1", "NoDevFiles")


def gpu_assigned() -> bool:
    """Whether this process was given a GPU: Ray sets CUDA_VISIBLE_DEVICES to the GPU ids of an
    actor or task that asked for num_gpus, and a user's shell sets it to pick one. For a
    process given no GPU, Ray 2.60 leaves the variable as the node's environment has it
    (ray-project/ray#54868), usually unset."""
    return os.environ.get("CUDA_VISIBLE_DEVICES", "") not in _NO_GPU_ASSIGNED


def cuda_problem() -> str | None:
    """Why torch cannot use CUDA in this process, naming the torch build, CUDA_VISIBLE_DEVICES
    and the fix; None when it can."""
    import torch

    if torch.cuda.is_available():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = "<unset>" if visible is None else repr(visible)
    if torch.version.cuda is None:
        what = f"torch {torch.__version__} is a CPU-only build (torch.version.cuda is None)"
        fix = "install a CUDA build of torch in this node's environment (https://pytorch.org/get-started/locally/)"
    else:
        what = f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) finds no usable GPU"
        fix = (
            f"check that the node has a GPU and an NVIDIA driver for CUDA {torch.version.cuda} (nvidia-smi), "
            "or install the torch build that matches its driver"
        )
    return (
        f"{what}, CUDA_VISIBLE_DEVICES={visible}; fix: {fix}; "
        "or run on the CPU: no num_gpus, device auto or cpu"
    )


def resolve_device(device: str = "auto") -> "torch.device":  # noqa: F821
    """`auto` is CUDA when torch can use it, else the CPU: a CPU-only node picks the CPU by itself.

    A GPU that was asked for and cannot be used raises CudaUnavailableError: `device` cuda, or
    `auto` in a process that was assigned a GPU (CUDA_VISIBLE_DEVICES names one, as Ray sets it
    for an actor with num_gpus).
    """
    import torch

    if not isinstance(device, str):
        raise TypeError(f"device must be a str, got {type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if gpu_assigned():
            raise CudaUnavailableError(f"a GPU was assigned to this process, but {cuda_problem()}")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CudaUnavailableError(f"device {device!r} was asked for, but {cuda_problem()}")
    return dev


def resolve_dtype(dtype: str, device: "torch.device") -> "torch.dtype":  # noqa: F821
    """`auto` is fp32 on the CPU, bf16 on CUDA where supported, else fp16."""
    import torch

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch.cpu API, hence getattr
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def check_dtype(device: "torch.device", dtype: "torch.dtype", model: str) -> None:  # noqa: F821
    """Refuse bf16 on a CPU that would emulate it.

    bf16 on the CPU is the opt-in fast path where the CPU has AVX512-BF16 or AMX: oneDNN runs
    the matmuls there (benchmarks/precision.py measures speed and agreement). Without them torch
    emulates bf16 through float32, several times slower than float32 itself, which is the
    opposite of what asking for it means; so the job or the replica fails at start with this
    error, not slowly.
    """
    import torch

    if device.type == "cpu" and dtype == torch.bfloat16 and not cpu_has_native_bf16():
        raise ValueError(
            f"dtype bfloat16 on the CPU for {model}: this CPU has neither AVX512-BF16 nor AMX, so torch "
            "would emulate bf16, slower than float32; use dtype float32 (or auto)"
        )


def load_model(auto_class: str, options: LoadOptions, device: "torch.device", dtype: "torch.dtype", **kwargs: Any):
    """Load weights with `transformers.<auto_class>`, in eval mode on `device`."""
    import transformers

    cls = getattr(transformers, auto_class)
    try:
        model = cls.from_pretrained(
            str(options.model),
            dtype=dtype,
            use_safetensors=options.use_safetensors,
            **options.hub_kwargs(),
            **kwargs,
        )
    except Exception as e:  # wrap every loader failure so the message names the model
        raise RuntimeError(f"failed to load {auto_class} from {options.model!r}: {e}") from e
    return model.to(device).eval()


def load_config(options: LoadOptions):
    import transformers

    try:
        return transformers.AutoConfig.from_pretrained(str(options.model), **options.hub_kwargs())
    except Exception as e:  # wrap: a bad id or directory should name itself
        raise RuntimeError(f"failed to load config from {options.model!r}: {e}") from e


PROCESSOR_CLASSES = {
    "tokenizer": "AutoTokenizer",
    "feature_extractor": "AutoFeatureExtractor",
    "image_processor": "AutoImageProcessor",
    "processor": "AutoProcessor",
}


def load_processor(kind: str, options: LoadOptions, **kwargs: Any):
    """Load a tokenizer, feature extractor, image processor or processor without any weights.

    kind: "tokenizer" | "feature_extractor" | "image_processor" | "processor".
    """
    import transformers

    # Only the one class: transformers imports lazily, and touching AutoProcessor or
    # AutoImageProcessor pulls in modeling_utils and torch.distributed, ~4 s of a text
    # preprocessing actor's start-up on 2 cores (measured with cProfile).
    cls = getattr(transformers, PROCESSOR_CLASSES[kind])
    # An image processor loads with AutoImageProcessor's own backend choice, as pipeline() does:
    # the torchvision backend where torchvision imports, the Pillow one (`*ImageProcessorPil`)
    # where it does not. The two resize a little differently (classification scores 2e-3
    # apart, near-threshold detections flip), so taskray follows the user's own pipeline;
    # operators/vision_inputs.py works with either (tests/operators/test_image_backends.py).
    try:
        return cls.from_pretrained(str(options.model), **options.hub_kwargs(), **kwargs)
    except Exception as e:  # wrap: the message must name the model
        raise RuntimeError(f"failed to load {kind} from {options.model!r}: {e}") from e
