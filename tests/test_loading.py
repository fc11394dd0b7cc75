"""Device/dtype resolution and the loading safety defaults (no Ray)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from operators import loading
from operators.loading import LoadOptions, resolve_device, resolve_dtype


def test_auto_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no GPU was assigned: no warning either
        assert resolve_device("auto").type == "cpu"


def test_assigned_gpu_without_cuda_falls_back_to_cpu_and_warns_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    loading._warn_cuda_missing_once.cache_clear()
    with pytest.warns(RuntimeWarning, match="CUDA_VISIBLE_DEVICES=7.*running on the CPU"):
        assert resolve_device("auto").type == "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("cuda").type == "cpu"  # same assignment: said once already


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

    from pipelines.tiny_models import build_tiny_model

    path = build_tiny_model("text-classification", str(tmp_path))
    code = (
        "import sys\n"
        "from operators.loading import LoadOptions, load_processor\n"
        f"load_processor('tokenizer', LoadOptions(model={path!r}))\n"
        "assert 'transformers.modeling_utils' not in sys.modules, 'modeling_utils imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
