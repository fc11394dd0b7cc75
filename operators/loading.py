"""Device, dtype and weight loading, with the safety defaults in one place.

Safetensors only and trust_remote_code=False unless the caller opts in. A local directory is
loaded with local_files_only=True so that nothing touches the network.
"""

from __future__ import annotations

import logging
import os
import warnings
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


@lru_cache(maxsize=None)
def _warn_cuda_missing_once(visible: str) -> None:
    warnings.warn(
        f"a GPU was assigned (CUDA_VISIBLE_DEVICES={visible}) but CUDA is not available "
        "to torch; running on the CPU",
        RuntimeWarning,
        stacklevel=3,
    )


def resolve_device(device: str = "auto") -> "torch.device":  # noqa: F821
    """`auto` is CUDA when torch can see it, else the CPU.

    A GPU that Ray assigned (CUDA_VISIBLE_DEVICES set) but torch cannot see falls back to the
    CPU with a single warning, so the same job runs on a laptop and on a GPU node.
    """
    import torch

    if not isinstance(device, str):
        raise TypeError(f"device must be a str, got {type(device).__name__}")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        if visible not in ("", "-1", "NoDevFiles"):
            _warn_cuda_missing_once(visible)
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        _warn_cuda_missing_once(os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
        return torch.device("cpu")
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
