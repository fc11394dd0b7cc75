"""`taskray submit [--address URL] -- run job.yaml` (or `-- serve serve.yaml`): run a taskray
command on a Ray cluster through the Jobs API, stream its logs, exit with its status."""

from __future__ import annotations

import argparse
import os
import sys

HELP = (
    "Run `taskray run ...` or `taskray serve ...` on a Ray cluster (Ray Jobs API): ships this "
    "project's code, pins its dependencies, follows the logs; exit 0 if the job SUCCEEDED, 1 if "
    "it FAILED or was STOPPED."
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.usage = "taskray submit [options] -- {run,serve} ARGS..."
    parser.add_argument(
        "--address",
        default=None,
        help="Ray dashboard / Jobs API URL of the head (default: RAY_ADDRESS when it is an "
        "http(s) URL, else http://127.0.0.1:8265, where `ray dashboard cluster.yaml` forwards it)",
    )
    parser.add_argument(
        "--working-dir",
        default=None,
        help="directory shipped as the job's working_dir (default: this taskray checkout)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="extra gitignore-style pattern left out of the upload (repeatable)",
    )
    pins = parser.add_mutually_exclusive_group()
    pins.add_argument(
        "--no-pip",
        action="store_true",
        help="install nothing per job: use the packages already on the cluster",
    )
    pins.add_argument(
        "--requirements",
        metavar="FILE",
        help="pip requirements file for the job instead of the pins from this environment",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="environment variable for the job; NAME alone forwards its value from here "
        "(repeatable). Values show in the dashboard: give nodes IAM roles, not keys.",
    )
    parser.add_argument("--submission-id", default=None, help="job id to use (default: taskray-<command>-<time>-<rand>)")
    parser.add_argument("--no-wait", action="store_true", help="submit, print the job id and return")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the entrypoint and runtime_env as JSON and submit nothing",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="`--` then the taskray command to run")


def _address(value: str | None) -> str:
    from pipelines.submit import DEFAULT_ADDRESS

    if value:
        return value
    env = os.environ.get("RAY_ADDRESS", "")
    return env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS


def _env_vars(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not name:
            raise ValueError(f"--env expects NAME or NAME=VALUE, got {item!r}")
        if not eq:
            if name not in os.environ:
                raise ValueError(f"--env {name}: not set in this environment")
            value = os.environ[name]
        env[name] = value
    return env


def _read_requirements(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        lines = [line.split("#", 1)[0].strip() for line in f]
    return [line for line in lines if line]


def main(args: argparse.Namespace) -> int:
    import json

    from pipelines.submit import build_submission, exit_code, follow, submit

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        pip: list[str] | bool = False if args.no_pip else True
        if args.requirements:
            pip = _read_requirements(args.requirements)
        sub = build_submission(
            command,
            working_dir=args.working_dir,
            extra_excludes=args.exclude,
            pip=pip,
            env_vars=_env_vars(args.env),
            submission_id=args.submission_id,
        )
    except (ValueError, OSError) as e:
        print(f"taskray submit: {e}", file=sys.stderr)
        return 2
    for warning in sub.warnings:
        print(f"taskray submit: warning: {warning}", file=sys.stderr)
    if args.dry_run:
        # env var values may be secrets: print their names only.
        shown = dict(sub.runtime_env)
        if "env_vars" in shown:
            shown["env_vars"] = {k: "<set>" for k in shown["env_vars"]}
        print(json.dumps({"entrypoint": sub.entrypoint, "runtime_env": shown, "submission_id": sub.submission_id}, indent=2))
        return 0

    address = _address(args.address)
    try:
        client, job_id = submit(sub, address)
    except RuntimeError as e:
        print(f"taskray submit: {e}", file=sys.stderr)
        return 1
    print(f"taskray submit: job {job_id} submitted to {address}: {sub.entrypoint}", flush=True)
    if args.no_wait:
        print(f"taskray submit: follow it with `ray job logs --address {address} --follow {job_id}`")
        return 0
    try:
        status = follow(client, job_id)
    except KeyboardInterrupt:
        # Detach rather than stop: a long labeling job should survive a closed terminal.
        print(
            f"\ntaskray submit: detached; job {job_id} keeps running. "
            f"Stop it with `ray job stop --address {address} {job_id}`",
            file=sys.stderr,
        )
        return 130
    print(f"taskray submit: job {job_id} {status}", flush=True)
    return exit_code(status)
