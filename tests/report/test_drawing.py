"""The report's drawing helpers on tiny images, and its escaping and sampling, without models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.report import charts, drawing, views
from pipelines.job_output import TaskColumns
from pipelines.report.sampling import sample_indices


def test_boxes_outline_in_label_colour_and_leave_the_rest():
    image = Image.new("RGB", (80, 60), (255, 255, 255))
    colours = drawing.Palette(["cat"])
    out = drawing.draw_boxes(image, [{"label": "cat", "score": 0.9, "box": {"xmin": 5, "ymin": 30, "xmax": 60, "ymax": 55}}], 1.0, colours)
    px = np.asarray(out)
    assert tuple(px[55, 30]) == colours("cat")  # bottom edge
    assert tuple(px[45, 60]) == colours("cat")  # right edge
    assert tuple(px[28, 6]) == colours("cat")  # the caption's background, above the box
    assert tuple(px[45, 30]) == (255, 255, 255)  # inside the box
    assert tuple(px[58, 75]) == (255, 255, 255)  # outside
    assert image.getpixel((5, 55)) == (255, 255, 255)  # the input is not drawn on


def test_boxes_scale_with_the_preview_and_skip_malformed_ones():
    image = Image.new("RGB", (40, 40), (0, 0, 0))
    objects = [{"label": "a", "score": 0.5, "box": {"xmin": 2, "ymin": 5, "xmax": 8, "ymax": 9}}, {"label": "b", "box": None}]
    out = np.asarray(drawing.draw_boxes(image, objects, scale=4.0))
    assert tuple(out[36, 20]) == drawing.label_colour("a")  # ymax 9 -> row 36
    assert tuple(out[28, 20]) == (0, 0, 0)


def test_masks_tint_only_their_pixels():
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    mask = Image.new("L", (4, 4), 0)
    mask.paste(255, (0, 0, 2, 4))  # left half; stretched to the 64x64 image
    colours = drawing.Palette(["road"])
    px = np.asarray(drawing.overlay_masks(image, [("road", mask)], colours)).astype(int)
    want = np.rint(np.asarray(colours("road")) * drawing.MASK_ALPHA / 255)
    assert np.abs(px[50, 10] - want).max() <= 1  # inside, below the caption
    assert tuple(px[50, 40]) == (0, 0, 0)  # right half untouched
    assert tuple(px[2, 1]) == colours("road")  # the caption at the mask's top left


def test_depth_colours_run_through_viridis_from_low_to_high():
    ramp = np.linspace(0, 65535, 256).astype(np.uint16).reshape(1, 256)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="PNG")  # a 16-bit PNG, as the depth column holds
    depth = Image.open(io.BytesIO(buf.getvalue()))
    coloured = np.asarray(drawing.colour_depth(depth))
    assert coloured.shape == (1, 256, 3)
    assert tuple(coloured[0, 0]) == drawing.VIRIDIS_ANCHORS[0]
    assert tuple(coloured[0, -1]) == drawing.VIRIDIS_ANCHORS[-1]
    assert tuple(coloured[0, 128]) == pytest.approx(drawing.VIRIDIS_ANCHORS[2], abs=3)
    eight_bit = np.asarray(drawing.colour_depth(Image.fromarray(np.array([[0, 255]], np.uint8))))
    assert tuple(eight_bit[0, 1]) == drawing.VIRIDIS_ANCHORS[-1]


@pytest.mark.parametrize(("size", "want"), [((1000, 500), (512, 256)), ((64, 32), (256, 128)), ((300, 400), (300, 400))])
def test_previews_fit_the_stated_sides(size, want):
    preview, scale = drawing.fit_preview(Image.new("RGB", size))
    assert preview.size == want and scale == pytest.approx(want[0] / size[0])


def test_palette_gives_the_first_labels_distinct_colours():
    palette = drawing.Palette(f"label{i}" for i in range(len(drawing.LABEL_COLOURS)))
    assert len({palette(f"label{i}") for i in range(len(drawing.LABEL_COLOURS))}) == len(drawing.LABEL_COLOURS)
    assert palette("label0") == drawing.LABEL_COLOURS[0]


HOSTILE = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'


def test_cards_escape_every_output_value():
    task = TaskColumns(
        "ner", "token-classification", "m", {"entities": "ner.entities", "error": "ner.error"}, {"text": "text"}
    )
    text = f"Hello {HOSTILE} world"
    start = text.index("<script>")
    row = {"text": text, "ner.entities": [{"entity_group": HOSTILE, "score": 0.5, "word": HOSTILE, "start": start, "end": start + 8}]}
    html = views.render_card(task, row, HOSTILE, drawing.Palette())
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "<mark" in html
    chart = charts.bar_chart([(HOSTILE, 3)], "rows")
    assert "<script" not in chart and "&lt;script&gt;" in chart


def test_highlight_marks_spans_and_skips_overlaps():
    html, skipped = views.highlight("abc def ghi", [(0, 3, "A", "t"), (2, 5, "B", "t"), (8, 11, "C", "t"), (None, None, "D", "t")], drawing.Palette())
    assert skipped == 2
    assert html.count("<mark") == 2 and ">abc<sub" in html and ">ghi<sub" in html


def test_sample_is_seeded_and_independent_of_row_order():
    ids = [f"id-{i}" for i in range(50)]
    first = [ids[i] for i in sample_indices(ids, 5, seed=0)]
    shuffled = ids[::-1]
    assert [shuffled[i] for i in sample_indices(shuffled, 5, seed=0)] == first
    assert [ids[i] for i in sample_indices(ids, 5, seed=1)] != first
    assert len(first) == 5 == len(set(first)) and first == sorted(first)
    assert len(sample_indices(ids[:3], 5)) == 3 and sample_indices(ids, 0) == []
