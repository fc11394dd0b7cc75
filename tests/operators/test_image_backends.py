"""The image backend is the one pipeline() picks in the same environment (operators/loading.py).

With torchvision importable, transformers.pipeline() loads the torchvision image processors;
without it, the Pillow ones (`*ImageProcessorPil`). The two resize differently in the last bits
(classification scores up to 1e-2 apart on these tiny 32 px models, near-threshold detections
flip), so taskray loads whichever pipeline() would, and its answers equal the user's own
pipeline's in both environments. A missing torchvision is simulated by making transformers'
backend resolution see none.
"""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from tests.operators.images import exif_rotated_jpeg, open_for_pipeline, varied_images

SCORE_TOL = 1e-5  # fp32, bit-identical pixels; batching changes summation order only
DEPTH_TOL = 1e-4  # GLPN's depths near 10; batching changes summation order only
CASES = [
    ("image-classification", None),
    ("image-classification", "convnext"),
    ("object-detection", None),
    ("image-segmentation", None),
    ("depth-estimation", None),
]


@pytest.fixture
def without_torchvision(monkeypatch):
    """transformers' AutoImageProcessor resolves its backend as if torchvision were missing."""
    import transformers.models.auto.image_processing_auto as auto

    monkeypatch.setattr(auto, "is_torchvision_available", lambda: False)


def images() -> list[bytes]:
    return varied_images() + [exif_rotated_jpeg()]


def assert_same_answers(task: str, op, reference, data: list[bytes]) -> None:
    """The operator's whole batch against pipeline() one image at a time."""
    from tests.operators.test_object_detection import assert_same_objects

    out = op({"image": data})
    assert out["error"] == [None] * len(data)
    for i, image in enumerate(data):
        if task == "image-classification":
            expected = reference(open_for_pipeline(image), top_k=6)
            assert [s["label"] for s in out["scores"][i]] == [e["label"] for e in expected]
            assert [s["score"] for s in out["scores"][i]] == pytest.approx([e["score"] for e in expected], abs=SCORE_TOL)
        elif task == "object-detection":
            assert_same_objects(out["objects"][i], reference(open_for_pipeline(image), threshold=0.3))
        elif task == "image-segmentation":
            expected = reference(open_for_pipeline(image), threshold=0.3)
            assert [s["label"] for s in out["segments"][i]] == [e["label"] for e in expected]
            assert [s["score"] for s in out["segments"][i]] == pytest.approx([e["score"] for e in expected], abs=SCORE_TOL)
        else:
            want = reference(open_for_pipeline(image))["predicted_depth"].numpy()
            np.testing.assert_allclose(np.asarray(out["predicted_depth"][i], np.float32), want, rtol=0, atol=DEPTH_TOL)


def task_options(task: str) -> dict:
    return {"image-classification": {"top_k": 6}, "object-detection": {"threshold": 0.3},
            "image-segmentation": {"threshold": 0.3}}.get(task, {})


@pytest.mark.parametrize("task,variant", CASES, ids=lambda v: v or "default")
def test_the_operator_loads_the_processor_pipeline_loads(tiny_model, task, variant):
    """torchvision imports here (.ci/install installs it), so both load the torchvision class,
    and the answers are the user's pipeline's."""
    from transformers import pipeline
    from transformers.image_processing_backends import TorchvisionBackend

    model_dir = tiny_model(task, variant)
    reference = pipeline(task, model=model_dir, device="cpu")
    op = get_operator(task)(model_dir, max_batch_rows=4, **task_options(task))
    assert type(op.processor) is type(reference.image_processor)
    assert isinstance(op.processor, TorchvisionBackend)
    assert_same_answers(task, op, reference, images())
    assert op._deferred, "uint8 pixels normalized on the device give the processor's values, checked"


@pytest.mark.parametrize("task,variant", CASES, ids=lambda v: v or "default")
def test_without_torchvision_both_use_the_pillow_processors(tiny_model, task, variant, without_torchvision):
    from transformers import pipeline
    from transformers.image_processing_backends import PilBackend

    model_dir = tiny_model(task, variant)
    reference = pipeline(task, model=model_dir, device="cpu")
    op = get_operator(task)(model_dir, max_batch_rows=4, **task_options(task))
    assert type(op.processor) is type(reference.image_processor)
    assert isinstance(op.processor, PilBackend) and type(op.processor).__name__.endswith("Pil")
    assert_same_answers(task, op, reference, images())
    assert op._deferred
    if (task, variant) == ("image-classification", None):
        assert op._direct and op._direct.backend == "pil", "ViT's fixed-size resize takes Pillow's shortcut"


def test_the_two_backends_differ_so_the_choice_matters(tiny_model, without_torchvision):
    """Why the backend must follow pipeline()'s: the same model and images through the other
    backend's processor give other scores (this guards the tests above against a change that
    made the backends agree, which would make them vacuous)."""
    from transformers import AutoImageProcessor

    model_dir = tiny_model("image-classification")
    pil = get_operator("image-classification")(model_dir, top_k=6)
    vision = get_operator("image-classification")(model_dir, top_k=6)
    vision._processor = AutoImageProcessor.from_pretrained(model_dir, backend="torchvision")
    a, b = pil({"image": images()}), vision({"image": images()})
    gaps = [
        abs(x["score"] - {s["label"]: s["score"] for s in sb}[x["label"]])
        for sa, sb in zip(a["scores"], b["scores"])
        for x in sa
    ]
    assert max(gaps) > 1e-3
