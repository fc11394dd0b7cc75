"""Submit a taskray command to a Ray cluster through the Ray Jobs API and follow it.

    sub = build_submission(["run", "job.yaml"])              # entrypoint + runtime_env
    status = follow(submit(sub, "http://127.0.0.1:8265"))    # streams the job's logs

The job runs `python -m pipelines.cli <command>` on the head node, from a copy of the project
(runtime_env `working_dir`, without data, caches, virtualenvs or .git), so the cluster runs the
submitter's code without a redeploy. Dependencies are pinned to the submitter's installed
versions (runtime_env `pip`). Ray builds that virtualenv on top of the cluster's own packages
(`--system-site-packages`), so when the cluster was set up with the same versions (cluster.yaml
does) the pins cost one quick `pip install` that finds everything satisfied, and when it was
not, the job still runs with the submitter's versions.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

COMMANDS = ("run", "serve")
DEFAULT_ADDRESS = "http://127.0.0.1:8265"  # where `ray dashboard cluster.yaml` forwards the head

# Never shipped: they are large, machine-specific or secret, and the job needs none of them.
DEFAULT_EXCLUDES = (
    ".git",
    ".venv",
    "venv",
    ".cache",
    ".pytest_cache",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "/build",
    "/dist",
    "/data",
    "*.parquet",
    "*.safetensors",
    "*.bin",
    "*.pt",
    "*.ckpt",
    "/taskray_output",
    "/taskray-demo",
    "/benchmarks/_work",
    ".env",
)

# Not pinned through runtime_env pip:
# - ray: the cluster's Ray is the one the job runs on (Ray itself strips ray from pip lists);
# - torch: the cluster carries the build for its hardware (CUDA wheel on GPU nodes). A pin that
#   differed would make every job download a multi-GB wheel into a fresh virtualenv.
UNPINNED = frozenset({"ray", "torch"})

# `run` flags whose values are paths, made absolute when given as relative local paths, because
# the job's working directory on the cluster is the unpacked copy of the project.
PATH_FLAGS = ("--input", "--output")


@dataclass(frozen=True)
class Submission:
    """What goes to JobSubmissionClient.submit_job."""

    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str
    warnings: list[str] = field(default_factory=list)


def project_root() -> str:
    """The checkout that holds this package: the directory with taskray's pyproject.toml."""
    import tomllib

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    pyproject = os.path.join(root, "pyproject.toml")
    try:
        with open(pyproject, "rb") as f:
            name = tomllib.load(f).get("project", {}).get("name")
    except OSError:
        name = None
    if name != "taskray":
        raise ValueError(
            f"taskray is not running from a source checkout (no taskray pyproject.toml in {root}); "
            "pass --working-dir with the project checkout to ship"
        )
    return root


def declared_requirements(working_dir: str) -> list[str]:
    """The runtime requirements the shipped code declares (its pyproject), else the installed ones."""
    import tomllib
    from importlib import metadata

    pyproject = os.path.join(working_dir, "pyproject.toml")
    if os.path.exists(pyproject):
        with open(pyproject, "rb") as f:
            return list(tomllib.load(f).get("project", {}).get("dependencies", []))
    return [r for r in metadata.requires("taskray") or [] if "extra ==" not in r]


def pinned_requirements(requirements: list[str]) -> list[str]:
    """Each requirement pinned to the version installed here (`name[extras]==X`).

    Requirements in UNPINNED are left out; one not installed here keeps its own specifier.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = []
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if canonicalize_name(req.name) in UNPINNED:
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            pins.append(str(req))
            continue
        pins.append(f"{req.name}{extras}=={installed}")
    return pins


def is_excluded(relpath: str, excludes: list[str] | tuple[str, ...]) -> bool:
    """Whether a path relative to the working dir falls under an exclude pattern, read as
    Ray reads them (gitignore style): a pattern with a leading or inner '/' is anchored at the
    working dir's root, one without matches a file or directory name at any depth."""
    parts = relpath.replace(os.sep, "/").split("/")
    for pattern in excludes:
        anchored = "/" in pattern.rstrip("/")
        pattern = pattern.strip("/")
        if anchored:
            depth = pattern.count("/") + 1
            if fnmatch.fnmatchcase("/".join(parts[:depth]), pattern):
                return True
        elif any(fnmatch.fnmatchcase(p, pattern) for p in parts):
            return True
    return False


def _remote_path(value: str, working_dir: str, excludes: list[str], warnings: list[str]) -> str:
    """A local path as the job on the cluster should see it.

    Inside the shipped working dir: relative to it (the job's cwd there). Elsewhere (or
    excluded from the upload): absolute, which only works where the cluster sees the same
    filesystem; the caller is warned, since data on a real cluster belongs on s3://.
    """
    path = os.path.abspath(value)
    rel = os.path.relpath(path, working_dir)
    if not rel.startswith(os.pardir) and not is_excluded(rel, excludes):
        return rel
    warnings.append(
        f"{value!r} is not shipped with the job; it must exist at {path} on the cluster's nodes"
    )
    return path


def build_entrypoint(
    command: list[str], working_dir: str, excludes: list[str], warnings: list[str]
) -> str:
    """`python -m pipelines.cli <command...>`, with local paths rewritten for the cluster."""
    if not command or command[0] not in COMMANDS:
        got = command[0] if command else "nothing"
        raise ValueError(f"expected a taskray command after '--' ({' | '.join(COMMANDS)}), got {got!r}")
    args = [command[0]]
    rest = command[1:]
    i = 0
    while i < len(rest):
        arg = rest[i]
        flag, eq, inline = arg.partition("=")
        if flag in PATH_FLAGS and (eq or i + 1 < len(rest)):
            value = inline if eq else rest[i + 1]
            if "://" not in value and not os.path.isabs(value):
                value = os.path.abspath(value)
            args.append(f"{flag}={value}")
            i += 1 if eq else 2
            continue
        if not arg.startswith("-") and "://" not in arg and os.path.exists(arg):
            arg = _remote_path(arg, working_dir, excludes, warnings)
        args.append(arg)
        i += 1
    return shlex.join(["python", "-m", "pipelines.cli", *args])


def build_runtime_env(
    working_dir: str,
    *,
    excludes: list[str],
    pip: list[str] | None,
    env_vars: dict[str, str] | None = None,
) -> dict[str, Any]:
    env: dict[str, Any] = {"working_dir": working_dir, "excludes": list(excludes)}
    if pip:
        env["pip"] = {"packages": list(pip), "pip_check": False}
    if env_vars:
        env["env_vars"] = dict(env_vars)
    return env


def build_submission(
    command: list[str],
    *,
    working_dir: str | None = None,
    extra_excludes: list[str] | None = None,
    pip: list[str] | None | bool = True,
    env_vars: dict[str, str] | None = None,
    submission_id: str | None = None,
) -> Submission:
    """Everything the Jobs API needs to run `taskray <command...>` on a cluster.

    pip=True pins the project's requirements to the versions installed here; a list uses those
    requirement strings as given; False/None installs nothing (the cluster's packages serve).
    """
    root = os.path.abspath(working_dir) if working_dir else project_root()
    if not os.path.isdir(root):
        raise ValueError(f"working dir {root!r} is not a directory")
    excludes = [*DEFAULT_EXCLUDES, *(extra_excludes or [])]
    warnings: list[str] = []
    entrypoint = build_entrypoint(list(command), root, excludes, warnings)
    if pip is True:
        packages = pinned_requirements(declared_requirements(root))
    elif pip:
        packages = list(pip)
    else:
        packages = None
    runtime_env = build_runtime_env(root, excludes=excludes, pip=packages, env_vars=env_vars)
    sid = submission_id or f"taskray-{command[0]}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return Submission(entrypoint=entrypoint, runtime_env=runtime_env, submission_id=sid, warnings=warnings)


def _use_local_auth_token() -> None:
    """Send the Ray auth token when one is available here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
    or ~/.ray/auth_token) and RAY_AUTH_MODE does not say otherwise.

    Ray 2.60 turns token auth on for a head started where such a token exists, and its Jobs
    API then answers 401 without it. JobSubmissionClient only attaches the token when token
    mode is on in this process, which `ray.init()` switches on when it connects but the SDK
    (and `ray job submit`) do not, so we make the same call `ray.init()` makes.
    """
    import logging

    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available,
    )

    setup_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = setup_logger.level
    setup_logger.setLevel(logging.ERROR)  # its "token auth is enabled" warning is noise here
    try:
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup_logger.setLevel(level)


def submit(submission: Submission, address: str) -> tuple[Any, str]:
    """Submit through the Jobs API (uploading the working dir); returns (client, job id)."""
    from ray.job_submission import JobSubmissionClient

    _use_local_auth_token()
    try:
        client = JobSubmissionClient(address)
    except Exception as e:  # connection errors come as several types (ConnectionError, RuntimeError)
        raise RuntimeError(f"cannot reach the Ray Jobs API at {address}: {e}") from e
    job_id = client.submit_job(
        entrypoint=submission.entrypoint,
        runtime_env=submission.runtime_env,
        submission_id=submission.submission_id,
        metadata={"submitted_by": "taskray submit"},
    )
    return client, job_id


def follow(client: Any, job_id: str, *, out: TextIO = sys.stdout, poll_s: float = 1.0) -> str:
    """Stream the job's logs to `out` until it ends; returns its final status name."""
    import asyncio

    from ray.job_submission import JobStatus

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            out.write(lines)
            out.flush()

    asyncio.run(tail())
    # The log stream closes when the job ends; the status can trail it by a moment.
    while not (status := client.get_job_status(job_id)).is_terminal():
        time.sleep(poll_s)
    return JobStatus(status).value


def exit_code(status: str) -> int:
    """0 for SUCCEEDED; 1 for FAILED or STOPPED."""
    if status == "SUCCEEDED":
        return 0
    if status in ("FAILED", "STOPPED"):
        return 1
    raise ValueError(f"expected a terminal job status, got {status!r}")
