"""Device/dtype resolution and the loading safety defaults (no Ray)."""

from __future__ import annotations

import os
import shutil
import warnings

import pytest
import torch

from operators import loading
from operators.loading import LoadOptions, resolve_device, resolve_dtype


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    """A CPU-only node with no GPU asked for picks the CPU by itself, silently."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for visible in (None, "", "-1"):  # unset (a Ray process given no GPU); CUDA's "hide every device"
        if visible is None:
            monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        else:
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert resolve_device("auto").type == "cpu"
            assert resolve_device("cpu").type == "cpu"


@pytest.mark.parametrize("device", ["auto", "cuda", "cuda:1"])
def test_asked_for_gpu_without_cuda_is_refused(monkeypatch, device):
    """A GPU that Ray assigned (CUDA_VISIBLE_DEVICES) or device cuda, where torch cannot use
    CUDA, raises naming the torch build, CUDA_VISIBLE_DEVICES and the fix: never a quiet CPU run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    with pytest.raises(loading.CudaUnavailableError) as e:
        resolve_device(device)
    message = str(e.value)
    assert f"torch {torch.__version__}" in message and "CUDA_VISIBLE_DEVICES='7'" in message
    assert "fix: " in message and "run on the CPU" in message
    assert ("assigned to this process" if device == "auto" else f"device {device!r} was asked for") in message


def test_cuda_problem_names_the_build(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.version, "cuda", None)
    cpu_build = loading.cuda_problem()
    assert "CPU-only build" in cpu_build and "install a CUDA build of torch" in cpu_build
    assert "CUDA_VISIBLE_DEVICES=<unset>" in cpu_build
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    cuda_build = loading.cuda_problem()
    assert "built for CUDA 12.8" in cuda_build and "nvidia-smi" in cuda_build
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loading.cuda_problem() is None


def test_dtype_auto(monkeypatch):
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_dtype("auto", torch.device("cuda")) == torch.float16
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
    with pytest.raises(ValueError, match="got 'int8'"):
        resolve_dtype("int8", torch.device("cpu"))


def test_safety_defaults(tmp_path):
    local = LoadOptions(model=str(tmp_path))
    assert local.use_safetensors and not local.trust_remote_code
    assert local.hub_kwargs() == {"trust_remote_code": False, "local_files_only": True}
    hub = LoadOptions(model="google/vit-base-patch16-224", revision="abc123")
    assert hub.hub_kwargs() == {"trust_remote_code": False, "revision": "abc123"}
    assert LoadOptions(model="x/y", trust_remote_code=True).hub_kwargs()["trust_remote_code"] is True


def test_pickle_only_checkpoint_is_refused(tmp_path, tiny_model):
    """A directory with only pytorch_model.bin (pickle) must not load: safetensors only."""
    import shutil

    from operators import get_operator

    src = tiny_model("text-classification")
    dst = tmp_path / "pickled"
    shutil.copytree(src, dst)
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(src)
    (dst / "model.safetensors").unlink()
    torch.save(model.state_dict(), dst / "pytorch_model.bin")
    op = get_operator("text-classification")(str(dst))
    with pytest.raises(RuntimeError, match="failed to load AutoModelForSequenceClassification"):
        op.load()


def test_missing_model_directory_names_itself():
    from operators import get_operator

    op = get_operator("text-classification")("/nonexistent/model-dir")
    with pytest.raises(RuntimeError, match="/nonexistent/model-dir"):
        op.load()


@pytest.mark.gpu
def test_cuda_auto_dtype_and_device(tiny_model):
    from operators import get_operator

    op = get_operator("text-classification")(tiny_model("text-classification")).load()
    assert op.device.type == "cuda"
    assert op.dtype in (torch.bfloat16, torch.float16)
    out = op({"text": ["a GPU row", "another"]})
    assert out["error"] == [None, None]


def test_tokenizer_loads_without_the_modeling_stack(tmp_path):
    """A text preprocessing actor needs only the tokenizer; touching AutoProcessor or
    AutoImageProcessor imported transformers.modeling_utils and cost ~4 s of start-up."""
    import subprocess
    import sys

    from tiny_models import build_tiny_model

    path = build_tiny_model("text-classification", str(tmp_path))
    code = (
        "import sys\n"
        "from operators.loading import LoadOptions, load_processor\n"
        f"load_processor('tokenizer', LoadOptions(model={path!r}))\n"
        "assert 'transformers.modeling_utils' not in sys.modules, 'modeling_utils imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


def test_attention_is_sdpa_where_supported_and_the_option_overrides(tiny_model):
    from operators import get_operator

    from tests.operators.texts import VARIED_TEXTS

    Op = get_operator("text-classification")
    default = Op(tiny_model("text-classification")).load()
    eager = Op(tiny_model("text-classification"), attn_implementation="eager").load()
    assert default.model.config._attn_implementation == "sdpa"
    assert eager.model.config._attn_implementation == "eager"
    a, b = default({"text": VARIED_TEXTS}), eager({"text": VARIED_TEXTS})
    # other kernels sum in other orders; the calibrated tiny model's large logits turn that into
    # ~1e-4 in its scores (the text-classification parity tolerance is 1e-3 for the same reason)
    assert a["label"] == b["label"] and a["score"] == pytest.approx(b["score"], abs=1e-3)
    # GLPN has no SDPA kernel: transformers' choice falls back to eager, and the load works
    depth = get_operator("depth-estimation")(tiny_model("depth-estimation")).load()
    assert depth.model.config._attn_implementation == "eager"


@pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if cxx),
    reason="torch.compile's Inductor needs a C++ compiler on the CPU",
)
def test_torch_compile_is_opt_in_and_gives_the_same_results(tiny_model):
    """Compiled in place, with dynamic shapes: calls with other lengths give the same results too."""
    from operators import get_operator

    from tests.operators.texts import VARIED_TEXTS

    Op = get_operator("text-classification")
    plain = Op(tiny_model("text-classification"), max_batch_rows=4).load()
    assert plain.model._compiled_call_impl is None
    compiled = Op(tiny_model("text-classification"), max_batch_rows=4, torch_compile=True).load()
    assert compiled.model._compiled_call_impl is not None
    assert type(compiled.model) is type(plain.model)  # config and generate() read as before
    for texts in (VARIED_TEXTS, [t + " and a few more words" for t in VARIED_TEXTS]):
        a, b = plain({"text": texts}), compiled({"text": texts})
        assert b["error"] == [None] * len(texts)
        assert a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)  # fused kernels: ~1e-4


def test_attn_implementation_takes_named_kernels_only(tiny_model):
    """A hub repository here would make transformers download and run its code."""
    from operators import get_operator

    with pytest.raises(ValueError, match="attn_implementation"):
        get_operator("text-classification")(
            tiny_model("text-classification"), attn_implementation="kernels-community/flash-attn"
        )
