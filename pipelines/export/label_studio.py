"""Label Studio tasks with predictions, and the labeling config they import into.

One task per row whose task succeeded:

    {"data": {"image": "<media name>", "row_id": "<id>"},
     "predictions": [{"model_version": "<model>", "score": 0.93, "result": [<regions>]}]}

The regions use Label Studio's result format (labelstud.io/guide/predictions):

| taskray task                   | data  | control (from_name)          | value                                   |
|--------------------------------|-------|------------------------------|-----------------------------------------|
| image-classification           | image | Choices (label)              | choices                                 |
| object-detection               | image | RectangleLabels (label)      | x, y, width, height in % of the image   |
| image-segmentation             | image | BrushLabels (label)          | Label Studio's RLE of the mask          |
| text-classification            | text  | Choices (label)              | choices                                 |
| token-classification           | text  | Labels (label)               | start, end, text (character offsets)    |
| automatic-speech-recognition   | audio | TextArea (transcription)     | text                                    |
| summarization                  | text  | TextArea (summary)           | text                                    |
| translation                    | text  | TextArea (translation)       | text                                    |
| audio-classification           | audio | Choices (label)              | choices                                 |

Media (image, audio) is named as in the COCO export (kept path, else the row id) behind an
optional prefix (a URL or Label Studio's `/data/local-files/?d=` path); text tasks need their
text column kept. Rectangles are percent of `original_width`/`original_height`, the image
size the job recorded, so `x * original_width / 100` gives back the Parquet pixel. Masks are
encoded by label-studio-sdk's own `converter.brush.mask2rle`.

The prediction `score` is the row's score for classification, the mean of the regions'
scores for detection and segmentation (each region carries its own), and absent for text
outputs, which have none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from xml.sax.saxutils import quoteattr

from pipelines.export.json_output import JsonFile
from pipelines.export.source import SIZE_COLUMNS, ExportError, ExportSource, require


@dataclass(frozen=True)
class Layout:
    """How one taskray task appears in Label Studio."""

    role: str  # the input role the task's data holds
    object_tag: str  # Image | Text | Audio, named after the role, value $<role>
    control_tag: str  # the control the predictions fill
    control_name: str
    result: str  # the output column read (a list of items for regions)
    labelled: bool = True  # the control lists the model's labels


LAYOUTS: dict[str, Layout] = {
    "image-classification": Layout("image", "Image", "Choices", "label", "label"),
    "object-detection": Layout("image", "Image", "RectangleLabels", "label", "objects"),
    "image-segmentation": Layout("image", "Image", "BrushLabels", "label", "segments"),
    "text-classification": Layout("text", "Text", "Choices", "label", "label"),
    "token-classification": Layout("text", "Text", "Labels", "label", "entities"),
    "automatic-speech-recognition": Layout("audio", "Audio", "TextArea", "transcription", "text", labelled=False),
    "summarization": Layout("text", "Text", "TextArea", "summary", "summary_text", labelled=False),
    "translation": Layout("text", "Text", "TextArea", "translation", "translation_text", labelled=False),
    "audio-classification": Layout("audio", "Audio", "Choices", "label", "label"),
}
TASKS = tuple(LAYOUTS)
MEDIA_ROLES = ("image", "audio")


@dataclass
class LabelStudioResult:
    path: str
    task: str
    tasks: int = 0
    regions: int = 0
    failed_rows: int = 0
    skipped_regions: int = 0  # entities without character offsets
    label_source: str = ""
    config: str = ""
    bytes: int = 0
    labels: list[str] = field(default_factory=list)


def write_label_studio(source: ExportSource, path: str, media_prefix: str = "") -> LabelStudioResult:
    layout = LAYOUTS[source.task.task]
    brush = require("label_studio_sdk.converter.brush", "label-studio-sdk", "a Label Studio export") if layout.control_tag == "BrushLabels" else None
    interface = require("label_studio_sdk.label_interface", "label-studio-sdk", "a Label Studio export")
    if layout.role not in MEDIA_ROLES and not source.task.inputs.get(layout.role):
        raise ExportError(
            f"Label Studio tasks show the {layout.role} their predictions mark, and {source.output.uri} does not have it: "
            f"the job did not keep its input column (add it to keep_columns and run the job again)"
        )
    if layout.control_tag == "RectangleLabels" and any(c not in source.task.results for c in SIZE_COLUMNS):
        raise ExportError(
            f"{source.output.uri} records no image sizes ({', '.join(SIZE_COLUMNS)}): it was written by a taskray "
            "version before they were recorded; run the job again to export its boxes"
        )
    result = LabelStudioResult(path, source.task.name, failed_rows=source.failed_rows(), label_source=source.label_source)
    seen: dict[str, None] = {}
    build = _BUILDERS[layout.control_tag]
    sizes = SIZE_COLUMNS if any(c in source.task.results for c in SIZE_COLUMNS) else ()
    columns = source.columns(layout.result, "score", *sizes, inputs=(layout.role,))

    def tasks() -> Iterator[dict[str, Any]]:
        for row in source.rows(columns):
            regions, score = build(source, layout, row, brush, result)
            for region in regions:
                result.regions += 1
                for label in region["value"].get(layout.control_tag.lower(), []) if layout.labelled else []:
                    seen[label] = None
            prediction: dict[str, Any] = {"model_version": source.model_version}
            if score is not None:
                prediction["score"] = score
            prediction["result"] = regions
            yield {"data": {layout.role: _data_value(source, layout, row, media_prefix), "row_id": row[source.output.id_column]}, "predictions": [prediction]}

    with JsonFile(path) as out:
        result.tasks = out.array(tasks())
        out.raw("\n")
    result.bytes = out.bytes
    result.labels = _config_labels(source, layout, list(seen))
    result.config = labeling_config(layout, result.labels)
    try:
        interface.LabelInterface(result.config).validate()
    except Exception as e:  # the SDK's own check of what --print-config prints; a failure is a bug here
        raise RuntimeError(f"label-studio-sdk refuses the labeling config taskray made: {e}\n{result.config}") from e
    return result


def _data_value(source: ExportSource, layout: Layout, row: dict[str, Any], media_prefix: str) -> Any:
    if layout.role in MEDIA_ROLES:
        return media_prefix + source.media_name(row)
    value = row.get(source.task.inputs[layout.role])
    return "" if value is None else str(value)


def labeling_config(layout: Layout, labels: list[str]) -> str:
    """The labeling config XML whose controls the predictions fill."""
    role = layout.role
    obj = f"  <{layout.object_tag} name={quoteattr(role)} value={quoteattr('$' + role)}/>"
    attrs = f"name={quoteattr(layout.control_name)} toName={quoteattr(role)}"
    if layout.control_tag == "Choices":
        choices = "".join(f"\n    <Choice value={quoteattr(label)}/>" for label in labels)
        control = f'  <Choices {attrs} choice="single">{choices}\n  </Choices>'
    elif layout.control_tag == "TextArea":
        control = f'  <TextArea {attrs} editable="true" maxSubmissions="1" rows="4"/>'
    else:
        items = "".join(f"\n    <Label value={quoteattr(label)}/>" for label in labels)
        control = f"  <{layout.control_tag} {attrs}>{items}\n  </{layout.control_tag}>"
    return f"<View>\n{obj}\n{control}\n</View>\n"


def _config_labels(source: ExportSource, layout: Layout, seen: list[str]) -> list[str]:
    """The model's labels as the predictions name them, then any other label the predictions
    use (none for an output of the recorded model)."""
    if not layout.labelled:
        return []
    labels = source.labels()
    if source.task.task == "token-classification":
        labels = _entity_labels(source, labels)
    return list(dict.fromkeys([*labels, *seen]))


def _entity_labels(source: ExportSource, labels: list[str]) -> list[str]:
    """id2label as the entities name them: B-/I- tags grouped into their entity type unless
    the job asked for no aggregation, without the ignored labels ("O")."""
    from transformers.pipelines.token_classification import TokenClassificationPipeline

    from operators import get_operator

    options = get_operator(source.task.task).Options(**source.task.options)
    if options.aggregation_strategy != "none":
        # transformers' own B-/I- split (it reads nothing from the pipeline instance)
        labels = [TokenClassificationPipeline.get_tag(None, label)[1] for label in labels]
    ignore = set(options.ignore_labels)
    return [label for label in dict.fromkeys(labels) if label not in ignore]


# -- one row's regions and prediction score


def _choices(source: ExportSource, layout: Layout, row: dict[str, Any], brush, result) -> tuple[list[dict], float | None]:
    label, score = source.result(row, "label"), source.result(row, "score")
    value = {"choices": [str(label)]}
    return [_region("r0", layout, "choices", value)], (None if score is None else float(score))


def _rectangles(source: ExportSource, layout: Layout, row: dict[str, Any], brush, result) -> tuple[list[dict], float | None]:
    width, height = source.image_size(row)
    regions = []
    for k, obj in enumerate(source.result(row, layout.result) or []):
        box = obj["box"]
        value = {
            "x": 100.0 * box["xmin"] / width,
            "y": 100.0 * box["ymin"] / height,
            "width": 100.0 * (box["xmax"] - box["xmin"]) / width,
            "height": 100.0 * (box["ymax"] - box["ymin"]) / height,
            "rotation": 0,
            "rectanglelabels": [str(obj["label"])],
        }
        regions.append(_region(f"r{k}", layout, "rectanglelabels", value, obj.get("score"), (width, height)))
    return regions, _mean_score(regions)


def _brushes(source: ExportSource, layout: Layout, row: dict[str, Any], brush, result) -> tuple[list[dict], float | None]:
    import io

    import numpy as np
    from PIL import Image

    regions = []
    for k, segment in enumerate(source.result(row, layout.result) or []):
        with Image.open(io.BytesIO(segment["mask"])) as image:
            mask = np.asarray(image.convert("L"))
        # Label Studio draws the mask's alpha: 255 inside, 0 outside (mask2rle repeats it over RGBA)
        rle = brush.mask2rle(np.where(mask > 127, 255, 0).astype(np.uint8))
        value = {"format": "rle", "rle": [int(v) for v in rle], "brushlabels": [str(segment["label"])]}
        height, width = mask.shape
        regions.append(_region(f"r{k}", layout, "brushlabels", value, segment.get("score"), (width, height)))
    return regions, _mean_score(regions)


def _spans(source: ExportSource, layout: Layout, row: dict[str, Any], brush, result) -> tuple[list[dict], float | None]:
    text = row.get(source.task.inputs[layout.role]) or ""
    regions = []
    for entity in source.result(row, layout.result) or []:
        start, end = entity.get("start"), entity.get("end")
        if not isinstance(start, int) or not isinstance(end, int):
            result.skipped_regions += 1  # a tokenizer without offsets: nothing to mark
            continue
        label = entity.get("entity_group", entity.get("entity"))
        # Python's offsets count code points, as Label Studio's Text does since
        # label-studio-frontend#308 (HumanSignal/label-studio#1008: JS string lengths put spans
        # after an emoji off by one).
        value = {"start": start, "end": end, "text": text[start:end], "labels": [str(label)]}
        regions.append(_region(f"r{len(regions)}", layout, "labels", value, entity.get("score")))
    return regions, _mean_score(regions)


def _text_area(source: ExportSource, layout: Layout, row: dict[str, Any], brush, result) -> tuple[list[dict], float | None]:
    text = source.result(row, layout.result)
    return [_region("r0", layout, "textarea", {"text": ["" if text is None else str(text)]})], None


_BUILDERS: dict[str, Callable[..., tuple[list[dict], float | None]]] = {
    "Choices": _choices,
    "RectangleLabels": _rectangles,
    "BrushLabels": _brushes,
    "Labels": _spans,
    "TextArea": _text_area,
}


def _region(region_id: str, layout: Layout, kind: str, value: dict, score: Any = None, size: tuple[int, int] | None = None) -> dict[str, Any]:
    region: dict[str, Any] = {"id": region_id, "from_name": layout.control_name, "to_name": layout.role, "type": kind, "value": value}
    if size is not None:
        region.update(original_width=size[0], original_height=size[1], image_rotation=0)
    if score is not None:
        region["score"] = float(score)
    return region


def _mean_score(regions: list[dict]) -> float | None:
    scores = [r["score"] for r in regions if "score" in r]
    return sum(scores) / len(scores) if scores else None
