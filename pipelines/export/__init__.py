"""`taskray export`: a finished job's labels in the formats annotation tools and training code
read, so that they go on to review or training without a conversion script.

    from pipelines.export import export_labels
    result = export_labels("s3://bucket/labels/", "coco.json", "coco")              # detection / segmentation
    result = export_labels("labels/", "tasks.json", "label-studio", task="ner")     # + result.config (XML)

* `coco` (pipelines/export/coco.py): COCO instances for object-detection and image-segmentation
  outputs; loads with pycocotools.coco.COCO.
* `label-studio` (pipelines/export/label_studio.py): Label Studio tasks with predictions, and
  the labeling config that imports them, for every task Label Studio has a control for.

The output is read as `taskray report` reads it (pipelines/job_output.py), local or
s3://; the file written is local. Mask encoding needs the `export` extra (pycocotools,
label-studio-sdk), and an export that needs a missing one says so.
"""

from __future__ import annotations

from typing import Any

from pipelines.export.source import ExportError

FORMATS = ("coco", "label-studio")
__all__ = ["FORMATS", "ExportError", "export_labels"]


def export_labels(
    output: str, path: str, format: str, task: str | None = None, file_name: str | None = None, media_prefix: str = ""
) -> Any:
    """Export task `task` (None: the output's only task the format takes) of the finished
    output at `output` to the local file `path`. Returns the format's result (counts, the
    labeling config for Label Studio). Raises ExportError when it cannot."""
    from pipelines.export.source import open_source

    if format == "coco":
        from pipelines.export.coco import TASKS, write_coco

        return write_coco(open_source(output, task, TASKS, "COCO", file_name), path, media_prefix)
    if format == "label-studio":
        from pipelines.export.label_studio import TASKS, write_label_studio

        return write_label_studio(open_source(output, task, TASKS, "Label Studio", file_name), path, media_prefix)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
