"""COCO instances from an object-detection or image-segmentation output.

    {"info": {...}, "licenses": [],
     "images": [{"id", "file_name", "width", "height", "row_id"}],
     "categories": [{"id", "name", "supercategory"}],
     "annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "area", "iscrowd": 0,
                      "score", "segmentation": {"size": [h, w], "counts": "<compressed RLE>"}}]}

* `images`: one per row whose task succeeded (failed rows have no prediction to export), ids
  1..N in the output's file order. `width`/`height` are the sizes the job recorded
  (`image_width`/`image_height`), so no image is read again; `row_id` is the row's id.
* `categories`: the model's id2label, ids as the config numbers them (DETR's COCO checkpoints
  keep COCO's own category ids). A label the model names twice ("N/A") maps to its first id.
* `annotations`: detection boxes are the Parquet boxes (`[xmin, ymin, xmax - xmin, ymax - ymin]`,
  whole pixels as pipeline() gives them), area w*h. Segmentation masks are the PNG masks
  encoded by pycocotools.mask.encode; their bbox and area are pycocotools' (toBbox, area).
  `score` is the model's (left out for semantic segmentation, which has none).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from pipelines.export.json_output import JsonFile
from pipelines.export.source import SIZE_COLUMNS, ExportError, ExportSource, require

TASKS = ("object-detection", "image-segmentation")
ITEMS = {"object-detection": "objects", "image-segmentation": "segments"}


@dataclass
class CocoResult:
    path: str
    task: str
    images: int = 0
    annotations: int = 0
    categories: int = 0
    failed_rows: int = 0
    label_source: str = ""
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


def write_coco(source: ExportSource, path: str, media_prefix: str = "") -> CocoResult:
    segmentation = source.task.task == "image-segmentation"
    mask_api = require("pycocotools.mask", "pycocotools", "a COCO export of masks") if segmentation else None
    missing = [c for c in SIZE_COLUMNS if c not in source.task.results]
    if missing:
        raise ExportError(
            f"{source.output.uri} records no image sizes ({', '.join(missing)}): it was written by a taskray "
            "version before they were recorded; run the job again to export it as COCO"
        )
    result = CocoResult(path, source.task.name, failed_rows=source.failed_rows(), label_source=source.label_source)
    categories, category_of = _categories(source, result)
    items = ITEMS[source.task.task]

    with JsonFile(path) as out:
        info = {
            "description": f"taskray export of {source.output.uri} (task {source.task.name})",
            "version": source.model_version,
            "date_created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model": source.task.model,
        }
        out.raw('{"info":')
        out.value(info)
        out.raw(',"licenses":[],"categories":')
        out.value(categories)
        out.raw(',"images":')
        result.images = out.array(_images(source, media_prefix))
        out.raw(',"annotations":')
        result.annotations = out.array(_annotations(source, items, category_of, mask_api))
        out.raw("}\n")
    result.bytes = out.bytes
    result.categories = len(categories)
    return result


def _categories(source: ExportSource, result: CocoResult) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """COCO categories and label -> category id, from id2label plus any label found in the data
    that it lacks (none for an output of the recorded model)."""
    id2label = dict(sorted((source.id2label or {}).items()))
    category_of: dict[str, int] = {}
    for i, label in id2label.items():
        category_of.setdefault(label, i)
    found = sorted(_labels_in_data(source) - set(category_of))
    if found:
        why = "the model's labels lack them" if id2label else f"the model's labels are unknown: {source.label_source}"
        result.notes.append(f"categories {found} come from the labels in the output ({why})")
        start = max(id2label, default=0) + 1
        for offset, label in enumerate(found):
            id2label[start + offset] = label
            category_of[label] = start + offset
    categories = [{"id": i, "name": label, "supercategory": ""} for i, label in id2label.items()]
    return categories, category_of


def _labels_in_data(source: ExportSource) -> set[str]:
    import pyarrow.compute as pc

    from pipelines.job_output import leaf_paths

    column = source.task.results[ITEMS[source.task.task]]
    paths = leaf_paths(source.output, column, ("label",))
    labels: set[str] = set()
    if not paths:
        return labels
    for batch in source.batches(paths):
        items = pc.list_flatten(batch.column(0))
        labels.update(str(v) for v in pc.struct_field(items, "label").to_pylist() if v is not None)
    return labels


def _images(source: ExportSource, media_prefix: str) -> Iterator[dict[str, Any]]:
    columns = source.columns(*SIZE_COLUMNS)
    for image_id, row in enumerate(source.rows(columns), start=1):
        width, height = source.image_size(row)
        yield {
            "id": image_id,
            "file_name": media_prefix + source.media_name(row),
            "width": width,
            "height": height,
            "row_id": row[source.output.id_column],
        }


def _annotations(source: ExportSource, items: str, category_of: dict[str, int], mask_api) -> Iterator[dict[str, Any]]:
    # The same rows in the same order as _images, so image ids match by position.
    columns = source.columns(items, *SIZE_COLUMNS)
    annotation_id = 0
    for image_id, row in enumerate(source.rows(columns), start=1):
        width, height = source.image_size(row)
        for item in source.result(row, items) or []:
            annotation_id += 1
            ann: dict[str, Any] = {"id": annotation_id, "image_id": image_id, "category_id": category_of[item["label"]]}
            if mask_api is None:
                box = item["box"]
                w, h = box["xmax"] - box["xmin"], box["ymax"] - box["ymin"]
                ann.update(bbox=[box["xmin"], box["ymin"], w, h], area=w * h)
            else:
                rle = mask_api.encode(_mask_pixels(item["mask"], width, height, row[source.output.id_column]))
                ann.update(
                    bbox=[float(v) for v in mask_api.toBbox(rle)],
                    area=float(mask_api.area(rle)),
                    segmentation={"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                )
            ann["iscrowd"] = 0
            if item.get("score") is not None:
                ann["score"] = float(item["score"])
            yield ann


def _mask_pixels(png: bytes, width: int, height: int, row_id: Any):
    """The PNG mask (0/255) as the Fortran-ordered uint8 0/1 array pycocotools encodes."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        if image.size != (width, height):
            raise ExportError(f"row {row_id!r}: a mask of {image.size[0]}x{image.size[1]} for an image of {width}x{height}")
        pixels = np.asarray(image.convert("L"))
    return np.asfortranarray((pixels > 127).astype(np.uint8))
