"""`taskray export --format coco`: the file loads in pycocotools, and its boxes, labels, scores,
image sizes and masks equal the job's Parquet values."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from pipelines.cli import main as taskray
from pipelines.export import ExportError, export_labels
from tests.export.conftest import rows_by_id

DET, SEG = "object-detection", "image-segmentation"


@pytest.fixture(scope="module")
def detection_coco(labels_output, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("coco") / "det.json")
    return export_labels(labels_output, path, "coco", task=DET)


def load(path: str):
    from pycocotools.coco import COCO

    return COCO(path)


def test_detection_boxes_labels_scores_equal_parquet(detection_coco, labels_output, tiny_model):
    from transformers import AutoConfig

    coco = load(detection_coco.path)
    rows = rows_by_id(labels_output)
    ok = {i: r for i, r in rows.items() if r[f"{DET}.error"] is None}
    assert 0 < len(ok) < len(rows)  # the corrupt image's row failed, and is left out
    assert detection_coco.images == len(coco.imgs) == len(ok) and detection_coco.failed_rows == len(rows) - len(ok)

    id2label = AutoConfig.from_pretrained(tiny_model(DET)).id2label
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == id2label

    compared = 0
    for image in coco.loadImgs(coco.getImgIds()):
        row = ok[image["row_id"]]
        assert image["file_name"] == row["image"]["path"]  # the kept image column's path
        assert (image["width"], image["height"]) == (row[f"{DET}.image_width"], row[f"{DET}.image_height"])
        assert (image["width"], image["height"]) == Image.open(io.BytesIO(row["image"]["bytes"])).size
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        objects = row[f"{DET}.objects"]
        assert len(anns) == len(objects)
        for ann, obj in zip(anns, objects):
            box = obj["box"]
            assert ann["bbox"] == [box["xmin"], box["ymin"], box["xmax"] - box["xmin"], box["ymax"] - box["ymin"]]
            assert ann["area"] == ann["bbox"][2] * ann["bbox"][3]
            assert coco.cats[ann["category_id"]]["name"] == obj["label"]
            assert ann["score"] == obj["score"] and ann["iscrowd"] == 0
            compared += 1
    assert compared > len(ok)  # several boxes per image
    assert detection_coco.annotations == compared


def test_detection_results_load_for_evaluation(detection_coco):
    """The annotations double as a results file: COCO.loadRes and COCOeval read them (each
    box scores a perfect match against itself)."""
    from pycocotools.cocoeval import COCOeval

    coco = load(detection_coco.path)
    results = coco.loadRes(json.load(open(detection_coco.path))["annotations"])
    evaluation = COCOeval(coco, results, "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    assert len(results.anns) == len(coco.anns)


def test_segmentation_masks_decode_to_the_png_masks(labels_output, tmp_path):
    from pycocotools import mask as mask_api

    result = export_labels(labels_output, str(tmp_path / "seg.json"), "coco", task=SEG)
    coco = load(result.path)
    rows = rows_by_id(labels_output)
    compared = 0
    for image in coco.loadImgs(coco.getImgIds()):
        row = rows[image["row_id"]]
        assert (image["width"], image["height"]) == (row[f"{SEG}.image_width"], row[f"{SEG}.image_height"])
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        segments = row[f"{SEG}.segments"]
        assert len(anns) == len(segments)
        for ann, segment in zip(anns, segments):
            png = np.asarray(Image.open(io.BytesIO(segment["mask"])))
            decoded = mask_api.decode(coco.annToRLE(ann))
            assert decoded.shape == (image["height"], image["width"])
            assert np.array_equal(decoded.astype(bool), png == 255)
            assert np.array_equal(coco.annToMask(ann).astype(bool), png == 255)
            assert ann["area"] == int((png == 255).sum())
            ys, xs = np.nonzero(png == 255)
            assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert coco.cats[ann["category_id"]]["name"] == segment["label"] and ann["score"] == segment["score"]
            compared += 1
    assert compared >= result.images > 0


def test_cli_single_task_output_names_images_by_id(detection_output, tmp_path, capsys):
    out = tmp_path / "coco.json"
    assert taskray(["export", detection_output, "--format", "coco", "--out", str(out), "--media-prefix", "images/"]) == 0
    assert "coco: " in capsys.readouterr().out
    coco = load(str(out))
    rows = rows_by_id(detection_output)
    for image in coco.imgs.values():  # no path kept: the row id names the image
        assert image["file_name"] == "images/" + image["row_id"]
        row = rows[image["row_id"]]
        assert [a["bbox"][0] for a in coco.imgToAnns[image["id"]]] == [o["box"]["xmin"] for o in row["objects"]]


def test_categories_come_from_the_manifest_without_the_model(detection_output, tmp_path):
    """The job recorded id2label in _SUCCESS, so an export needs neither the model nor a hub;
    an output written before that falls back to the labels in the data, and says so."""
    copy = tmp_path / "labels"
    shutil.copytree(detection_output, copy)
    manifest = json.loads((copy / "_SUCCESS").read_text())
    recorded = manifest["tasks"][DET]["id2label"]
    assert recorded
    manifest["spec"]["tasks"][0]["model"] = str(tmp_path / "gone")
    (copy / "_SUCCESS").write_text(json.dumps(manifest))
    result = export_labels(str(copy), str(tmp_path / "a.json"), "coco")
    assert {str(c["id"]): c["name"] for c in load(result.path).dataset["categories"]} == recorded
    assert result.label_source == "the job's _SUCCESS" and not result.notes

    manifest["tasks"][DET]["id2label"] = None
    (copy / "_SUCCESS").write_text(json.dumps(manifest))
    result = export_labels(str(copy), str(tmp_path / "b.json"), "coco")
    names = [c["name"] for c in load(result.path).dataset["categories"]]
    found = {o["label"] for r in rows_by_id(detection_output).values() for o in (r["objects"] or [])}
    assert names == sorted(found) and result.notes and "did not load" in result.notes[0]


def test_an_output_without_image_sizes_is_refused(detection_output, tmp_path):
    import pyarrow.parquet as pq

    copy = tmp_path / "old"
    shutil.copytree(detection_output, copy)
    for name in os.listdir(copy):
        if name.endswith(".parquet"):
            table = pq.read_table(copy / name)
            pq.write_table(table.drop_columns(["image_width", "image_height"]), copy / name)
    with pytest.raises(ExportError, match="records no image sizes.*run the job again"):
        export_labels(str(copy), str(tmp_path / "x.json"), "coco")
    assert not (tmp_path / "x.json").exists()


def test_wrong_task_and_ambiguous_output_are_refused(labels_output, tmp_path, capsys):
    out = str(tmp_path / "x.json")
    assert taskray(["export", labels_output, "--format", "coco", "--out", out]) == 2
    assert "several tasks COCO can export (object-detection, image-segmentation); name one with --task" in capsys.readouterr().err
    with pytest.raises(ExportError, match="task 'text-classification' is text-classification; COCO exports"):
        export_labels(labels_output, out, "coco", task="text-classification")
    with pytest.raises(ExportError, match="no task 'nope'"):
        export_labels(labels_output, out, "coco", task="nope")
    assert taskray(["export", str(tmp_path), "--format", "coco", "--out", out]) == 2
    assert "_SUCCESS" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_a_missing_package_names_the_extra(labels_output, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pycocotools.mask", None)  # import raises ImportError
    with pytest.raises(ExportError, match=r"needs pycocotools.*pip install 'taskray\[export\]'"):
        export_labels(labels_output, str(tmp_path / "x.json"), "coco", task=SEG)


def test_export_reads_an_output_on_s3(detection_output, tmp_path):
    import pyarrow.fs as pafs

    from tests.s3_server import s3_endpoint

    with s3_endpoint(bucket="export-test") as s3:
        pafs.copy_files(detection_output, f"{s3.bucket}/labels", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=s3.pyarrow_fs())
        result = export_labels(s3.uri("labels"), str(tmp_path / "s3.json"), "coco")
    local = export_labels(detection_output, str(tmp_path / "local.json"), "coco")
    strip = lambda d: {k: v for k, v in d.items() if k != "info"}  # noqa: E731 - info names the source
    assert strip(json.load(open(result.path))) == strip(json.load(open(local.path)))
    assert result.annotations > 0


def test_semantic_segmentation_has_masks_without_scores(tiny_model, tmp_path):
    """Semantic segmentation gives one mask per class present and no score (as pipeline());
    both formats export its masks and leave the score out."""
    from pycocotools import mask as mask_api

    from label_studio_sdk.converter.brush import decode_rle
    from tests.report.conftest import write_job_output

    output = write_job_output(str(tmp_path), tiny_model, [{"task": SEG, "options": {"subtask": "semantic"}}], ["image"], files=1)
    rows = rows_by_id(output)
    coco = load(export_labels(output, str(tmp_path / "coco.json"), "coco").path)
    studio = {t["data"]["row_id"]: t for t in json.load(open(export_labels(output, str(tmp_path / "ls.json"), "label-studio").path))}
    masks = 0
    for image in coco.imgs.values():
        segments = rows[image["row_id"]]["segments"]
        anns = coco.imgToAnns[image["id"]]
        regions = studio[image["row_id"]]["predictions"][0]["result"]
        assert len(anns) == len(regions) == len(segments) > 0
        assert "score" not in studio[image["row_id"]]["predictions"][0]
        for ann, region, segment in zip(anns, regions, segments):
            png = np.asarray(Image.open(io.BytesIO(segment["mask"])))
            assert segment["score"] is None and "score" not in ann and "score" not in region
            assert np.array_equal(mask_api.decode(coco.annToRLE(ann)).astype(bool), png == 255)
            assert np.array_equal(decode_rle(region["value"]["rle"]).reshape(*png.shape, 4)[:, :, 3], png)
            masks += 1
    assert masks > len(coco.imgs)  # several classes per image


def test_file_name_column_can_be_chosen(labels_output, tmp_path):
    rows = rows_by_id(labels_output)
    coco = load(export_labels(labels_output, str(tmp_path / "t.json"), "coco", task=DET, file_name="text").path)
    assert all(image["file_name"] == (rows[image["row_id"]]["text"] or image["row_id"]) for image in coco.imgs.values())
    coco = load(export_labels(labels_output, str(tmp_path / "i.json"), "coco", task=DET, file_name="id").path)
    assert all(image["file_name"] == image["row_id"] for image in coco.imgs.values())
    with pytest.raises(ExportError, match="--file-name 'audio' is a binary column"):
        export_labels(labels_output, str(tmp_path / "x.json"), "coco", task=DET, file_name="audio")
    with pytest.raises(ExportError, match="--file-name 'nope': the output has no such column"):
        export_labels(labels_output, str(tmp_path / "x.json"), "coco", task=DET, file_name="nope")
