"""The image size that exports need is recorded by the detection and segmentation operators
themselves (`image_width`/`image_height`): the decoded image's size after its EXIF orientation,
which is the frame that boxes and masks are in. Serve answers keep pipeline()'s shape."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from operators import get_operator
from pipelines.serve.codec import shape_results
from tests.operators import images


@pytest.mark.parametrize("task,items", [("object-detection", "objects"), ("image-segmentation", "segments")])
def test_sizes_are_the_oriented_image_size(tiny_model, task, items):
    op = get_operator(task)(tiny_model(task), threshold=0.1)
    batch = [images.exif_rotated_jpeg(), images.encode(images.pixels(70, 30, 1), "PNG"), images.truncated_jpeg()]
    out = op({"image": batch})
    assert out["error"][:2] == [None, None] and out["error"][2] is not None
    # the 80x40 JPEG displays (and is labelled) as 40x80; a failed row has no size
    assert list(zip(out["image_width"], out["image_height"])) == [(40, 80), (70, 30), (None, None)]
    if task == "image-segmentation":
        for segment in out["segments"][0]:
            assert Image.open(io.BytesIO(segment["mask"])).size == (40, 80)
    else:
        assert all(o["box"]["xmax"] <= 40 and o["box"]["ymax"] <= 80 for o in out["objects"][0])
    # the HTTP answer is still pipeline()'s list, without the size columns
    answer = shape_results(op.response_shape(), op.output_columns, {k: v[:1] for k, v in out.items()}, is_list=False)
    assert answer == shape_results(op.response_shape(), (items,), {items: out[items][:1], "error": [None]}, is_list=False)
    assert isinstance(answer, list) and all("image_width" not in item for item in answer)
