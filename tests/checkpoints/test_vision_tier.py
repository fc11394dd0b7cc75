"""The vision families users bring most, each rebuilt from its published configuration and
preprocessor_config.json (tiny_models/tier_vision.py), run by the operator with its
default options over real photographs of mixed sizes (tests/fixtures/images), batched, and
held to the plain transformers.pipeline() a user builds, one image at a time: each image's
image-alone answer.

Stands for: ConvNeXT (facebook/convnext-*-224), ResNet (microsoft/resnet-*), Swin
(microsoft/swin-*-patch4-window7-224), DETR with transformers' ResNet (facebook/detr-resnet-50
revision no_timm), YOLOS (hustvl/yolos-*), RT-DETR (PekingU/rtdetr_r*vd), SegFormer
(nvidia/segformer-b*-finetuned-*), Mask2Former with Swin (facebook/mask2former-swin-*), DPT
(Intel/dpt-large), Depth Anything V2 (depth-anything/Depth-Anything-V2-*-hf).
"""

from __future__ import annotations

import numpy as np
import pytest

from operators import get_operator
from tests.offline.conftest import ray_session, write_parquet  # noqa: F401  (ray_session: a fixture)
from tests.operators.images import default_pipeline, open_for_pipeline, real_photos
from tests.operators.test_image_segmentation import assert_same_segments
from tests.operators.test_object_detection import assert_same_objects

# fp32 on the CPU with the processor's own pixels, bit for bit; a batch changes summation
# order only, which moves scores in the sixth decimal.
SCORE_TOL = 1e-5
DEPTH_RTOL = 1e-4  # of the map's range, for the same reason


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return real_photos()


@pytest.fixture(scope="module")
def some_photos(photos) -> list[bytes]:
    """Every other photo (8 of 15, still of mixed sizes and orientations), for the families
    whose processor resizes to one fixed size or runs at 512 px and more: fewer model calls."""
    return photos[::2]


def photo_size(data: bytes) -> tuple[int, int]:
    from operators.decoding.image import decode_image

    return decode_image(data).size


# ---------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    "hub_id", ["facebook/convnext-tiny-224", "microsoft/resnet-50", "microsoft/swin-tiny-patch4-window7-224"]
)
def test_classification_matches_pipeline(checkpoint_model, photos, hub_id):
    model_dir = checkpoint_model(hub_id)
    op = get_operator("image-classification")(model_dir)
    out = op({"image": photos})
    assert out["error"] == [None] * len(photos)
    reference = default_pipeline("image-classification", model_dir)
    assert type(op.processor) is type(reference.image_processor)
    for i, data in enumerate(photos):
        expected = reference(open_for_pipeline(data))  # top 5 of 1000
        assert [s["label"] for s in out["scores"][i]] == [e["label"] for e in expected]
        assert [s["score"] for s in out["scores"][i]] == pytest.approx([e["score"] for e in expected], abs=SCORE_TOL)
    assert len(set(out["label"])) > 3, "the calibrated head should give labels that vary with the photo"


def test_published_classification_processors_are_what_loads(checkpoint_model):
    """The legacy keys convert as for users: ConvNeXT's and ResNet's shortest edge 224 with
    crop_pct, Swin's square 224, all bicubic."""
    for hub_id, size in (
        ("facebook/convnext-tiny-224", {"shortest_edge": 224}),
        ("microsoft/resnet-50", {"shortest_edge": 224}),
        ("microsoft/swin-tiny-patch4-window7-224", {"height": 224, "width": 224}),
    ):
        processor = get_operator("image-classification")(checkpoint_model(hub_id)).processor
        assert processor.size == size and processor.resample == 3, hub_id


# ---------------------------------------------------------------------------- detection

DETECTORS = ["facebook/detr-resnet-50@no_timm", "hustvl/yolos-small", "PekingU/rtdetr_r50vd"]


@pytest.fixture(scope="module")
def detections(checkpoint_model, photos):
    """hub id -> (the operator's objects with default options over all photos in one call,
    pipeline()'s objects one photo at a time), at pipeline()'s default threshold 0.5."""
    cache: dict[str, tuple[list, list]] = {}

    def get(hub_id: str):
        if hub_id not in cache:
            model_dir = checkpoint_model(hub_id)
            out = get_operator("object-detection")(model_dir)({"image": photos})
            assert out["error"] == [None] * len(photos)
            reference = default_pipeline("object-detection", model_dir)
            cache[hub_id] = out["objects"], [reference(open_for_pipeline(data)) for data in photos]
        return cache[hub_id]

    return get


@pytest.mark.parametrize("hub_id", DETECTORS)
def test_detection_with_default_options_gives_each_photo_its_image_alone_answer(detections, photos, hub_id):
    got, want = detections(hub_id)
    for objects, expected in zip(got, want):
        assert_same_objects(objects, expected)
    found = [len(objects) for objects in want]
    labels = {o["label"] for objects in want for o in objects}
    assert sum(n > 0 for n in found) >= len(photos) // 2 and len(labels) > 3, (
        f"the comparison must see objects: {found} objects per photo, labels {sorted(labels)}"
    )


def test_detr_default_options_give_each_photo_the_answer_it_gets_alone(checkpoint_model, photos, detections):
    """The same operator and processor, the whole collection in one call against one photo per
    call: with the default options no photo's answer depends on the others in its call
    (before padded buckets were opt-in, 0.25 padding moved some of them)."""
    batched, _ = detections("facebook/detr-resnet-50@no_timm")
    op = get_operator("object-detection")(checkpoint_model("facebook/detr-resnet-50@no_timm"))
    for objects, data in zip(batched, photos):
        assert_same_objects(objects, op({"image": [data]})["objects"][0])


def test_detr_processor_makes_many_shapes_and_batches_them_exactly(checkpoint_model, photos):
    """DETR at 800/1333 keeps each photo's aspect ratio: the 15 photos make many tensor shapes.
    By default only equal shapes share a micro-batch (no padding)."""
    op = get_operator("object-detection")(checkpoint_model("facebook/detr-resnet-50@no_timm"))
    assert op.processor.size == {"shortest_edge": 800, "longest_edge": 1333} and op.pads_with_mask
    prepared = op.preprocess({"image": photos})
    shapes = [f["pixels"].shape for f in prepared["features"]]
    assert len(set(shapes)) >= 8
    batches = op.plan_batches(prepared["features"])
    assert all(len({shapes[i] for i in batch}) == 1 for batch in batches)
    assert any(len(batch) > 1 for batch in batches), "photos of one size still share a micro-batch"


def test_opt_in_padded_buckets_move_detr_answers_on_real_photos(checkpoint_model, photos, detections):
    """Why padded buckets are opt-in: max_padding 0.25 pads photos of similar aspect ratio
    together, and the padded edge moves DETR's answer for some of them (measured: see
    benchmarks/RESULTS.md, padded buckets on real photos)."""
    _, alone = detections("facebook/detr-resnet-50@no_timm")
    op = get_operator("object-detection")(checkpoint_model("facebook/detr-resnet-50@no_timm"), max_padding=0.25)
    prepared = op.preprocess({"image": photos})
    assert any(len(batch) > 1 for batch in op.plan_batches(prepared["features"]))
    padded = op.postprocess(op.forward(prepared), prepared)["objects"]

    def same(got, want) -> bool:
        return [o["label"] for o in got] == [o["label"] for o in want] and all(
            abs(g["score"] - w["score"]) <= SCORE_TOL for g, w in zip(got, want)
        )

    agree = sum(same(g, w) for g, w in zip(padded, alone))
    assert agree < len(photos), "padding left every answer unchanged; revisit the opt-in default"


@pytest.mark.ray
def test_taskray_run_with_default_options_gives_each_photo_its_image_alone_answer(
    ray_session, checkpoint_model, detections, photos, tmp_path  # noqa: F811
):
    """The job path with no option: DETR (which reads a pixel mask, the one family that could
    pad) over the 15 photos in one forward call, each photo's objects those pipeline() gives
    it alone."""
    import pyarrow.parquet as pq

    from pipelines.cli import main as taskray

    _, want = detections("facebook/detr-resnet-50@no_timm")
    model_dir = checkpoint_model("facebook/detr-resnet-50@no_timm")
    write_parquet(str(tmp_path / "in"), {"image": photos, "n": list(range(len(photos)))})
    out = str(tmp_path / "out")
    args = [
        "run", "--task", "object-detection", "--model", model_dir, "--input", str(tmp_path / "in"),
        "--output", out, "--keep-columns", "n",
    ]
    assert taskray(args) == 0
    rows = pq.read_table(out).sort_by("n").to_pylist()
    assert [r["error"] for r in rows] == [None] * len(photos)
    for row, expected in zip(rows, want):
        assert_same_objects(row["objects"], expected)


# ---------------------------------------------------------------------------- segmentation


@pytest.mark.parametrize(
    "hub_id,threshold",
    [("nvidia/segformer-b0-finetuned-ade-512-512", None), ("facebook/mask2former-swin-tiny-coco-panoptic", 0.5)],
)
def test_segmentation_with_default_options_gives_each_photo_its_image_alone_answer(
    checkpoint_model, some_photos, hub_id, threshold
):
    photos = some_photos
    model_dir = checkpoint_model(hub_id)
    kwargs = {} if threshold is None else {"threshold": threshold}
    op = get_operator("image-segmentation")(model_dir, **kwargs)
    out = op({"image": photos})
    assert out["error"] == [None] * len(photos)
    reference = default_pipeline("image-segmentation", model_dir)
    labels = set()
    for segments, data in zip(out["segments"], photos):
        expected = reference(open_for_pipeline(data), **kwargs)
        assert_same_segments(segments, expected, photo_size(data))
        labels.update(s["label"] for s in segments)
    assert sum(len(s) for s in out["segments"]) > len(photos) and len(labels) > 3, "the comparison must see segments"


# ---------------------------------------------------------------------------- depth


@pytest.mark.parametrize("hub_id", ["Intel/dpt-large", "depth-anything/Depth-Anything-V2-Small-hf"])
def test_depth_matches_pipeline(checkpoint_model, some_photos, hub_id):
    photos = some_photos
    model_dir = checkpoint_model(hub_id)
    op = get_operator("depth-estimation")(model_dir)
    out = op({"image": photos})
    assert out["error"] == [None] * len(photos)
    reference = default_pipeline("depth-estimation", model_dir)
    for depth, data in zip(out["predicted_depth"], photos):
        want = reference(open_for_pipeline(data))["predicted_depth"].numpy()
        got = np.asarray(depth, dtype=np.float32)
        width, height = photo_size(data)
        assert got.shape == want.shape == (height, width)
        spread = float(want.max() - want.min())
        assert spread > 0
        np.testing.assert_allclose(got, want, rtol=0, atol=DEPTH_RTOL * spread)
