"""`taskray run`: an offline labeling job on Ray Data, from a job file and/or flags.

Exit codes: 0 the job finished (failed rows included, within the error budget), 1 it did not
(or more than max_failed_fraction of a task's rows failed), 2 a bad spec: anything the
preflight finds before the graph starts (input, columns, model config and options, output
not writable, resources no node has, a GPU asked for where torch cannot use CUDA), a non-empty
output without --resume/--overwrite, and a --resume over an output written by a job with
another fingerprint.
"""

from __future__ import annotations

import argparse
import sys

HELP = "Run task models over a dataset (Parquet/JSONL/CSV/images/audio, local or s3://) on Ray Data."

EXIT_OK, EXIT_FAILED, EXIT_SPEC = 0, 1, 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_file", nargs="?", help="job YAML file; flags override it")
    parser.add_argument("--task", help="transformers task id (see `taskray tasks`)")
    parser.add_argument("--model", help="hub id or local model directory")
    parser.add_argument("--input", action="append", help="input URI: directory, glob or file (repeatable)")
    parser.add_argument("--output", help="output directory URI")
    parser.add_argument("--input-format", choices=("auto", "parquet", "images", "audio", "jsonl", "csv", "webdataset"))
    parser.add_argument(
        "--output-format", choices=("parquet", "lance"),
        help="parquet (default), or lance: a Lance dataset whose embeddings lance/LanceDB vector search reads as they are",
    )
    parser.add_argument(
        "--target-file-size", metavar="BYTES",
        help="bytes of data per output file, e.g. 128MiB (the default) or 64MB; resume still tracks small blocks",
    )
    parser.add_argument("--column", action="append", metavar="ROLE=NAME", help="map an input role to a column (repeatable)")
    parser.add_argument("--id-column", metavar="NAME", help="unique id column of the input")
    parser.add_argument("--keep-columns", metavar="A,B", help="input columns copied to the output")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="operator option, value parsed as YAML (repeatable)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="rows per forward call")
    parser.add_argument("--num-gpus", type=float, metavar="F", help="GPUs per forward actor (fractional ok)")
    parser.add_argument("--actors", metavar="MIN:MAX", help="forward actor pool size")
    parser.add_argument(
        "--dtype", choices=("auto", "float32", "float16", "bfloat16"),
        help="weight dtype (default auto: bf16/fp16 on GPU, fp32 on CPU); bfloat16 on a CPU with AVX512-BF16 or AMX is the opt-in fast path",
    )
    from pipelines.spec import REMOVED_FIELDS

    for name in sorted(REMOVED_FIELDS):  # accepted only to be refused by name, saying taskray picks it
        parser.add_argument(f"--{name.replace('_', '-')}", dest=f"removed_{name}", nargs="?", const="", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, metavar="N", help="only the first N rows")
    parser.add_argument(
        "--max-failed-fraction", type=float, metavar="F",
        help="stop with exit 1 and no _SUCCESS when more than this share of a task's rows fail (default 0.5; 1 turns it off)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue an unfinished job in the output")
    mode.add_argument("--overwrite", action="store_true", help="delete the output first")
    mode.add_argument(
        "--retry-failed", action="store_true",
        help="run again only the rows of a finished output whose error is set, and replace them in place",
    )
    parser.add_argument(
        "--dry-run", action="store_true",
        help="print the resolved spec, what taskray picked for the hardware and why, the Ray Data plan and the "
        "output's columns and types; reads the input's listing and first file, runs nothing",
    )


def overrides_from_args(args: argparse.Namespace) -> dict:
    """CLI flags as JobSpec/TaskSpec field overrides (None = not given)."""
    out = {
        "task": args.task,
        "model": args.model,
        "input": args.input,
        "output": args.output,
        "input_format": args.input_format,
        "output_format": args.output_format,
        "target_file_size": args.target_file_size,
        "id_column": args.id_column,
        "keep_columns": args.keep_columns,
        "batch_size": args.batch_size,
        "num_gpus": args.num_gpus,
        "actors": args.actors,
        "dtype": args.dtype,
        "limit": args.limit,
        "max_failed_fraction": args.max_failed_fraction,
        "columns": _pairs(args.column, "--column", parse_values=False),
        "options": _pairs(args.option, "--option", parse_values=True),
    }
    from pipelines.spec import REMOVED_FIELDS

    for name in sorted(REMOVED_FIELDS):
        if getattr(args, f"removed_{name}", None) is not None:
            out[name] = getattr(args, f"removed_{name}")
    if args.resume:
        out["mode"] = "resume"
    elif args.overwrite:
        out["mode"] = "overwrite"
    elif args.retry_failed:
        out["mode"] = "retry-failed"
    return out


def _pairs(items: list[str] | None, flag: str, parse_values: bool) -> dict | None:
    if not items:
        return None
    from pipelines.spec import SpecError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{flag}: expected KEY=VALUE, got {item!r}")
        if parse_values:
            import yaml

            value = yaml.safe_load(value) if value.strip() else value
        out[key.strip()] = value
    return out


def main(args: argparse.Namespace) -> int:
    from pipelines.spec import SpecError, load_job_spec

    try:
        spec = load_job_spec(args.job_file, overrides_from_args(args))
    except SpecError as e:
        print(f"taskray run: bad job spec: {e}", file=sys.stderr)
        return EXIT_SPEC

    from pipelines.offline.job import JobFailedError, describe_plan, run_job

    if args.dry_run:
        try:
            print(describe_plan(spec))  # reads the input's listing and first file, as the run would
        except SpecError as e:
            print(f"taskray run: bad job spec: {e}", file=sys.stderr)
            return EXIT_SPEC
        return EXIT_OK
    try:
        if spec.mode == "retry-failed":
            from pipelines.offline.retry import retry_failed

            summary = retry_failed(spec)
        else:
            summary = run_job(spec)
    except SpecError as e:
        print(f"taskray run: bad job spec: {e}", file=sys.stderr)
        return EXIT_SPEC
    except JobFailedError as e:
        print(f"taskray run: {e}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # anything else also means the job did not finish; say what
        print(f"taskray run: job did not finish: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    print()
    print(summary.table())
    return EXIT_OK
