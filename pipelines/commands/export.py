"""`taskray export`: a finished job's labels as a COCO instances file or Label Studio tasks.

Exit codes: 0 written, 2 the output cannot be exported as asked (the message says why).
"""

from __future__ import annotations

import argparse
import sys

HELP = "Export a finished job's labels: COCO instances (detection, segmentation) or Label Studio tasks with predictions."

EXIT_OK, EXIT_CANNOT = 0, 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output", metavar="LABELS", help="the job's output directory (local or s3://), with its _SUCCESS")
    parser.add_argument("--format", required=True, choices=("coco", "label-studio"), help="coco: instances JSON; label-studio: tasks JSON")
    parser.add_argument("--out", required=True, metavar="FILE.json", help="where to write the export (a local file)")
    parser.add_argument("--task", metavar="NAME", help="the task to export from a multi-task output (its column prefix)")
    parser.add_argument(
        "--file-name", metavar="COLUMN",
        help="the kept column that names each row's media (COCO file_name, Label Studio data), or 'id'; default: "
        "the kept 'path' column, else the path in the kept image/audio column, else the row id",
    )
    parser.add_argument(
        "--media-prefix", default="", metavar="PREFIX",
        help="put before each media name, e.g. s3://bucket/images/ or /data/local-files/?d=images/",
    )
    parser.add_argument(
        "--print-config", action="store_true",
        help="label-studio: print the labeling config (XML) that imports the tasks to stdout (the summary goes to stderr)",
    )


def main(args: argparse.Namespace) -> int:
    from pipelines.export import ExportError, export_labels

    if args.print_config and args.format != "label-studio":
        print("taskray export: --print-config is for --format label-studio", file=sys.stderr)
        return EXIT_CANNOT
    try:
        result = export_labels(args.output, args.out, args.format, task=args.task, file_name=args.file_name, media_prefix=args.media_prefix)
    except ExportError as e:
        print(f"taskray export: {e}", file=sys.stderr)
        return EXIT_CANNOT
    summary = sys.stderr if args.print_config else sys.stdout
    if args.format == "coco":
        print(
            f"coco: {result.path} ({result.images} images, {result.annotations} annotations, {result.categories} categories "
            f"from {result.label_source}; {result.failed_rows} failed rows left out)",
            file=summary,
        )
    else:
        skipped = f", {result.skipped_regions} entities without offsets left out" if result.skipped_regions else ""
        print(
            f"label-studio: {result.path} ({result.tasks} tasks, {result.regions} regions; "
            f"{result.failed_rows} failed rows left out{skipped})",
            file=summary,
        )
    for note in getattr(result, "notes", []):
        print(f"note: {note}", file=sys.stderr)
    if args.print_config:
        sys.stdout.write(result.config)
    return EXIT_OK
