"""object-detection with facebook/detr-resnet-50's configuration: DetrConfig's published
layout (timm resnet50 backbone, 100 queries, COCO's 91 labels) and DetrImageProcessor at
shortest edge 800 / longest 1333 with padding, in the operator and in `taskray run`, held to
transformers.pipeline("object-detection").

Stands for: facebook/detr-resnet-50 (and -101, -dc5: the same layout with another timm
backbone or dilation). The transformer is shrunk; the resnet50 backbone is the real one, run
on inputs the processor upscales to 800 px, so the images are strips (the longest edge cap
then keeps them near 267 x 1333 px).
"""

from __future__ import annotations

import pytest

from operators import get_operator
from tests.offline.conftest import ray_session, write_parquet  # noqa: F401  (ray_session: a fixture)
from tests.offline.test_tasks_end_to_end import assert_close
from tests.operators.images import encode, open_for_pipeline, default_pipeline, pixels
from tests.operators.test_object_detection import assert_same_objects

TASK = "object-detection"
HUB_ID = "facebook/detr-resnet-50"


@pytest.fixture(scope="module")
def model_dir(checkpoint_model):
    return checkpoint_model(HUB_ID)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    """Two wide strips of one size (a micro-batch of two) and a tall one."""
    return [encode(pixels(160, 32, 1), "JPEG"), encode(pixels(160, 32, 2), "PNG"), encode(pixels(36, 180, 3), "JPEG")]


@pytest.fixture(scope="module")
def reference(model_dir, images) -> list[list[dict]]:
    """pipeline()'s objects at its default threshold (0.5), one image at a time."""
    detector = default_pipeline(TASK, model_dir)
    return [detector(open_for_pipeline(data)) for data in images]


def test_published_configuration_is_what_loads(model_dir):
    from transformers import AutoConfig, DetrConfig, pipeline
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    config = AutoConfig.from_pretrained(model_dir)
    assert config.backbone_config.model_type == "timm_backbone" and config.backbone_config.backbone == "resnet50"
    assert config.num_queries == 100 and config.num_labels == 91 and config.id2label[1] == "person"
    for key in ("dilation", "num_queries", "position_embedding_type", "auxiliary_loss"):
        assert getattr(config, key) == getattr(DetrConfig(), key), key
    op = get_operator(TASK)(model_dir)
    defaults = DetrImageProcessorPil()
    # the legacy size 800 / max_size 1333 read as DetrImageProcessor's defaults
    for key in ("size", "do_pad", "resample", "image_mean", "image_std", "rescale_factor", "do_normalize"):
        assert getattr(op.processor, key) == getattr(defaults, key), key
    # and as the processor of the pipeline a user gets by default (torchvision backend)
    default_pipeline = pipeline(TASK, model=model_dir, device="cpu")
    for key in ("size", "do_pad", "image_mean", "image_std"):
        assert getattr(default_pipeline.image_processor, key) == getattr(defaults, key), key


def test_loading_never_downloads_backbone_weights(model_dir, monkeypatch):
    """The published config says use_pretrained_backbone: true; transformers 5 builds the
    timm backbone unpretrained and the checkpoint's own weights fill it."""
    import timm

    calls = []
    create_model = timm.create_model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(timm, "create_model", lambda *a, **kw: calls.append(kw) or create_model(*a, **kw))
    op = get_operator(TASK)(model_dir).load()
    assert calls and all(not kw.get("pretrained") for kw in calls), calls
    assert type(op.model.model.backbone.model).__module__.startswith("timm."), "the backbone is timm's ResNet"


def test_parity_with_pipeline(model_dir, images, reference):
    op = get_operator(TASK)(model_dir)
    prepared = op.preprocess({"image": images})
    shapes = [f["pixels"].shape for f in prepared["features"]]
    assert shapes == [(3, 267, 1333), (3, 267, 1333), (3, 1333, 267)], "800 px shortest edge, capped at 1333"
    assert op.plan_batches(prepared["features"]) == [[0, 1], [2]]
    out = op.postprocess(op.forward(prepared), prepared)
    assert out["error"] == [None] * len(images)
    for got, want in zip(out["objects"], reference):
        assert_same_objects(got, want)
    labels = {o["label"] for objects in reference for o in objects}
    assert min(len(o) for o in reference) > 5 and len(labels) > 5, "the tiny model should find varied objects"


def test_missing_timm_fails_at_load_naming_model_and_fix(model_dir, monkeypatch):
    import operators.vision_inputs as vision_inputs

    def no_timm():
        raise ImportError("No module named 'timm'")

    monkeypatch.setattr(vision_inputs, "import_timm", no_timm)
    op = get_operator(TASK)(model_dir)
    with pytest.raises(ImportError) as failure:
        op.preprocess({"image": [encode(pixels(32, 32, 0), "PNG")]})
    message = str(failure.value)
    assert repr(model_dir) in message and "'resnet50'" in message and "pip install 'taskray[timm]'" in message
    assert "torchvision" in message


@pytest.mark.ray
def test_taskray_run_matches_pipeline(ray_session, model_dir, images, reference, tmp_path):  # noqa: F811
    import pyarrow.parquet as pq

    from pipelines.cli import main as taskray

    write_parquet(str(tmp_path / "in"), {"image": images, "n": list(range(len(images)))})
    out = str(tmp_path / "out")
    args = [
        "run", "--task", TASK, "--model", model_dir, "--input", str(tmp_path / "in"), "--output", out,
        "--keep-columns", "n", "--batch-size", "4", "--actors", "1:1",
    ]
    assert taskray(args) == 0
    rows = pq.read_table(out).sort_by("n").to_pylist()
    assert [r["error"] for r in rows] == [None] * len(images)
    for row, want in zip(rows, reference):
        assert_same_objects(row["objects"], want)
