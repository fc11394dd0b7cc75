"""`taskray export --format label-studio`: for every task Label Studio has a control for, the
labeling config passes label-studio-sdk's own config validation, every prediction passes its
LabelInterface.validate_prediction against that config, and every value round-trips to the
job's Parquet values (labels, scores, texts, character offsets, box pixels, mask pixels)."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main as taskray
from pipelines.export import ExportError, export_labels
from tests.export.conftest import rows_by_id

EXPORTED = (
    "image-classification", "object-detection", "image-segmentation", "text-classification", "token-classification",
    "automatic-speech-recognition", "summarization", "translation", "audio-classification",
)


@pytest.fixture(scope="module")
def rows(labels_output):
    return rows_by_id(labels_output)


@pytest.fixture(scope="module")
def exports(labels_output, tmp_path_factory):
    root = tmp_path_factory.mktemp("label-studio")
    return {task: export_labels(labels_output, str(root / f"{task}.json"), "label-studio", task=task) for task in EXPORTED}


def checked_tasks(result):
    """The exported tasks, after label-studio-sdk's checks of the config and of every prediction."""
    from label_studio_sdk.label_interface import LabelInterface

    interface = LabelInterface(result.config)
    interface.validate()
    tasks = json.load(open(result.path))
    for task in tasks:
        for obj in interface.objects:  # every $variable of the config has its data
            assert task["data"].get(obj.value_name) is not None, (obj.value_name, task["data"])
        for prediction in task["predictions"]:
            assert interface.validate_prediction(prediction, return_errors=True) == [], prediction
    return tasks


@pytest.mark.parametrize("task", EXPORTED)
def test_every_task_passes_label_studio_sdk_checks(exports, rows, task):
    tasks = checked_tasks(exports[task])
    ok = [i for i, r in rows.items() if r[f"{task}.error"] is None]
    assert [t["data"]["row_id"] for t in tasks] == ok  # failed rows are left out, order kept
    assert exports[task].failed_rows == len(rows) - len(ok)


def by_row(result) -> dict:
    return {t["data"]["row_id"]: t for t in json.load(open(result.path))}


@pytest.mark.parametrize("task", ["image-classification", "text-classification", "audio-classification"])
def test_choices_equal_the_row_label_and_score(exports, rows, tiny_model, task):
    from transformers import AutoConfig

    result = exports[task]
    id2label = AutoConfig.from_pretrained(tiny_model(task)).id2label
    assert result.labels == [id2label[i] for i in sorted(id2label)]  # the config offers every label
    labels = set()
    for row_id, t in by_row(result).items():
        row, (prediction,) = rows[row_id], t["predictions"]
        assert prediction["model_version"] == tiny_model(task)
        (region,) = prediction["result"]
        assert region["type"] == "choices" and region["value"]["choices"] == [row[f"{task}.label"]]
        assert prediction["score"] == row[f"{task}.score"]
        labels.add(row[f"{task}.label"])
    assert len(labels) > 1, "the tiny classifier should give more than one label"


def test_media_and_text_data(exports, rows):
    for row_id, t in by_row(exports["image-classification"]).items():
        assert t["data"]["image"] == rows[row_id]["image"]["path"]
    for row_id, t in by_row(exports["automatic-speech-recognition"]).items():
        assert t["data"]["audio"] == row_id  # raw bytes were kept, no path: the row id names the clip
    for row_id, t in by_row(exports["text-classification"]).items():
        assert t["data"]["text"] == rows[row_id]["text"]


def test_rectangles_round_trip_to_the_box_pixels(exports, rows):
    regions = 0
    for row_id, t in by_row(exports["object-detection"]).items():
        row = rows[row_id]
        width, height = row["object-detection.image_width"], row["object-detection.image_height"]
        (prediction,) = t["predictions"]
        objects = row["object-detection.objects"]
        assert len(prediction["result"]) == len(objects)
        for region, obj in zip(prediction["result"], objects):
            assert (region["original_width"], region["original_height"]) == (width, height)
            v, box = region["value"], obj["box"]
            back = {
                "xmin": v["x"] * width / 100, "ymin": v["y"] * height / 100,
                "xmax": (v["x"] + v["width"]) * width / 100, "ymax": (v["y"] + v["height"]) * height / 100,
            }
            for k in back:
                assert abs(back[k] - box[k]) < 1e-9 and round(back[k]) == box[k], (k, back, box)
            assert v["rectanglelabels"] == [obj["label"]] and region["score"] == obj["score"]
            regions += 1
        assert prediction["score"] == pytest.approx(np.mean([o["score"] for o in objects]), abs=1e-12)
    assert regions > len(rows)


def test_brushes_decode_to_the_png_masks(exports, rows):
    from label_studio_sdk.converter.brush import decode_from_annotation, decode_rle

    masks = 0
    for row_id, t in by_row(exports["image-segmentation"]).items():
        row = rows[row_id]
        (prediction,) = t["predictions"]
        segments = row["image-segmentation.segments"]
        assert len(prediction["result"]) == len(segments)
        for region, segment in zip(prediction["result"], segments):
            png = np.asarray(Image.open(io.BytesIO(segment["mask"])))
            h, w = png.shape
            assert (region["original_width"], region["original_height"]) == (w, h)
            rgba = decode_rle(region["value"]["rle"]).reshape(h, w, 4)
            assert np.array_equal(rgba[:, :, 3], png)  # the alpha Label Studio draws is the mask
            assert region["value"]["brushlabels"] == [segment["label"]] and region["score"] == segment["score"]
            masks += 1
        # the SDK's own reader of brush results (it takes results with their value flattened
        # in, as its converter passes them) gives the same layers
        layers = decode_from_annotation("label", [{**r, **r["value"]} for r in prediction["result"]])
        assert len(layers) == len(segments)
        assert all(np.array_equal(a, np.asarray(Image.open(io.BytesIO(s["mask"])))) for a, s in zip(layers.values(), segments))
    assert masks > 0


def test_entities_round_trip_to_offsets_and_text(exports, rows):
    result = exports["token-classification"]
    assert "O" not in result.labels and set(result.labels) == {"PER", "ORG", "LOC"}  # grouped B-/I- tags
    spans = 0
    for row_id, t in by_row(result).items():
        text = rows[row_id]["text"]
        assert t["data"]["text"] == text
        entities = rows[row_id]["token-classification.entities"]
        regions = t["predictions"][0]["result"]
        assert len(regions) == len(entities)
        for region, entity in zip(regions, entities):
            v = region["value"]
            assert (v["start"], v["end"], v["labels"]) == (entity["start"], entity["end"], [entity["entity_group"]])
            assert v["text"] == text[entity["start"]:entity["end"]] and region["score"] == entity["score"]
            spans += 1
    assert spans > 0


@pytest.mark.parametrize(
    "task,column,control",
    [
        ("automatic-speech-recognition", "text", "transcription"),
        ("summarization", "summary_text", "summary"),
        ("translation", "translation_text", "translation"),
    ],
)
def test_text_areas_equal_the_row_text(exports, rows, task, column, control):
    for row_id, t in by_row(exports[task]).items():
        (prediction,) = t["predictions"]
        assert "score" not in prediction  # these outputs have no score
        (region,) = prediction["result"]
        assert region["from_name"] == control and region["type"] == "textarea"
        assert region["value"]["text"] == [rows[row_id][f"{task}.{column}"]]


def test_print_config_writes_only_the_xml_to_stdout(labels_output, tmp_path, capsys):
    from label_studio_sdk.label_interface import LabelInterface

    out = tmp_path / "det.json"
    argv = ["export", labels_output, "--format", "label-studio", "--task", "object-detection", "--out", str(out)]
    assert taskray([*argv, "--print-config", "--media-prefix", "/data/local-files/?d="]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("<View>") and "<RectangleLabels" in printed.out
    assert "label-studio: " in printed.err and str(out) in printed.err
    interface = LabelInterface(printed.out)
    interface.validate()
    for task in json.load(open(out)):
        assert task["data"]["image"].startswith("/data/local-files/?d=img/")
        assert interface.validate_prediction(task["predictions"][0], return_errors=True) == []
    assert taskray(["export", labels_output, "--format", "coco", "--task", "object-detection", "--out", str(out), "--print-config"]) == 2
    assert "--print-config is for --format label-studio" in capsys.readouterr().err


def test_labels_with_markup_are_escaped_in_the_config():
    from label_studio_sdk.label_interface import LabelInterface

    from pipelines.export.label_studio import LAYOUTS, labeling_config

    labels = ['a "quoted" <label>', "b & c"]
    config = labeling_config(LAYOUTS["image-classification"], labels)
    interface = LabelInterface(config)
    interface.validate()
    assert interface.get_control("label").labels == labels


def test_text_tasks_need_their_text_kept(tmp_path, tiny_model):
    """A text task whose text was not kept cannot show what its predictions mark."""
    from tests.report.conftest import write_job_output

    bare = write_job_output(str(tmp_path), tiny_model, [{"task": "text-classification"}], [], files=1)
    with pytest.raises(ExportError, match="did not keep its input column.*keep_columns"):
        export_labels(bare, str(tmp_path / "x.json"), "label-studio")
    assert not (tmp_path / "x.json").exists()


def test_a_missing_package_names_the_extra(labels_output, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "label_studio_sdk.label_interface", None)
    with pytest.raises(ExportError, match=r"needs label-studio-sdk.*pip install 'taskray\[export\]'"):
        export_labels(labels_output, str(tmp_path / "x.json"), "label-studio", task="text-classification")
