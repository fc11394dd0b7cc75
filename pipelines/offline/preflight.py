"""Checks that run before the Ray Data graph starts. Each failure is a SpecError (`taskray run`
exits 2) with one line naming the field, so a job that cannot succeed fails in seconds rather
than after its actors start, or after every row has failed.

    source = check_input(spec)       # the input is readable; mapped columns exist with usable types
    check_operators(spec.tasks)      # each task's processor and config load; its options fit the model
    check_output(out)                # a probe object is written to the output and deleted
    check_resources(plan)            # (Ray up) every actor of the job's plan fits some node, now or once the autoscaler adds one;
                                     # a task that asked for a GPU can use CUDA there (check_cuda)

Messages never carry credentials: storage errors are passed through `redact`, and storage
options are never formatted.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import TYPE_CHECKING

from pipelines.spec import SpecError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow

    from pipelines.offline.plan import JobPlan
    from pipelines.sources import SourcePlan
    from pipelines.spec import JobSpec, TaskSpec
    from pipelines.storage import Location

TEXT_ROLES = frozenset({"text", "question", "context"})
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID")


def check_input(spec: "JobSpec") -> "SourcePlan":
    """The source plan: every column the tasks' mappings name exists (plan_source) and, as the
    first file types it, has a type the role takes."""
    import pyarrow as pa

    from pipelines.sources import TABLE_EXTENSIONS, plan_source

    try:
        source = plan_source(spec)
        if source.format in TABLE_EXTENSIONS:  # media and WebDataset columns: checked by plan_source
            schema = source.schema
            for t in spec.tasks:
                for role, column in t.role_columns().items():
                    problem = role_type_problem(role, schema.field(column).type)
                    if problem:
                        raise SpecError(
                            f"tasks[{t.column_prefix}].columns.{role}: column {column!r} of "
                            f"{source.files[0]} is {schema.field(column).type}; {problem}"
                        )
    except SpecError:
        raise
    except (OSError, ValueError, pa.ArrowException) as e:  # unreadable, not the format, bad URI
        raise SpecError(f"input: cannot read {', '.join(spec.input)}: {one_line(e)}") from None
    return source


def role_type_problem(role: str, arrow_type: "pyarrow.DataType") -> str | None:
    """Why a column of `arrow_type` cannot feed `role`, or None. All-null columns pass: their
    rows fail one by one, as any null cell does."""
    import pyarrow.types as pat

    if pat.is_null(arrow_type):
        return None
    if role in TEXT_ROLES:
        ok = pat.is_string(arrow_type) or pat.is_large_string(arrow_type) or pat.is_string_view(arrow_type)
        return None if ok else f"the {role!r} role takes strings"
    binary = pat.is_binary(arrow_type) or pat.is_large_binary(arrow_type) or pat.is_binary_view(arrow_type)
    if binary or pat.is_fixed_size_binary(arrow_type):
        return None
    if pat.is_struct(arrow_type):
        names = {arrow_type.field(i).name for i in range(arrow_type.num_fields)}
        # HF datasets' Image/Audio layout {bytes, path}; Audio's decoded {array, sampling_rate}.
        if names & {"bytes", "path"} or (role == "audio" and {"array", "sampling_rate"} <= names):
            return None
    if role == "audio" and (pat.is_list(arrow_type) or pat.is_large_list(arrow_type) or pat.is_fixed_size_list(arrow_type)):
        if pat.is_floating(arrow_type.value_type) or pat.is_integer(arrow_type.value_type):
            return None  # waveform samples at the model's sampling rate
    return f"the {role!r} role takes encoded bytes or a {{bytes, path}} struct"


def check_operators(tasks: "Sequence[TaskSpec]") -> None:
    """Each task's processor and config load, and its options fit the model: the operator's
    own `check_config()`, the same check its Serve replica and actors run. No weights."""
    from pydantic import ValidationError

    from pipelines.spec import first_error
    from operators.runtime import build_operator

    for t in tasks:
        where = f"tasks[{t.column_prefix}]"
        try:
            op = build_operator(t)
            _ = op.processor
            op.check_config()
        except ValidationError as e:
            raise SpecError(f"{where}.options.{first_error(e)}") from None
        except (ValueError, RuntimeError, OSError, ImportError) as e:  # processor/config load, checks
            raise SpecError(f"{where}: {one_line(e)}") from None


def check_output(out: "Location") -> None:
    """Write a probe object under the output and delete it (creates the directory)."""
    probe = posixpath.join(out.path, f"_taskray_probe_{uuid.uuid4().hex}")
    fs = out.filesystem
    try:
        fs.create_dir(out.path, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"taskray write probe\n")
        fs.delete_file(probe)
    except (OSError, ValueError) as e:
        raise SpecError(f"output: cannot write to {out.uri}: {one_line(e)}") from None


def check_resources(plan: "JobPlan") -> None:
    """Every actor pool of `plan` (pipelines/offline/plan.py: the bundles its stages ask Ray for) fits
    on some node: a node alive now, or a node type of the autoscaler's cluster config (Ray's
    GCS holds it on autoscaling clusters). And the pools' minimum sizes fit the cluster's
    capacity together. Needs an initialized Ray."""
    import ray

    from pipelines.hardware import autoscaler_limits

    shapes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    node_types, most = autoscaler_limits()
    shapes += node_types
    capacity = {k: max(v, most.get(k, 0)) for k, v in ray.cluster_resources().items()}
    for k, v in most.items():
        capacity.setdefault(k, v)
    where_scaled = " or autoscaler node type" if node_types else ""
    needed: dict[str, float] = {}
    for request in plan.actor_requests():
        bundle = request.bundle
        if not any(all(shape.get(k, 0) >= v for k, v in bundle.items()) for shape in shapes):
            key = next(k for k, v in bundle.items() if not any(shape.get(k, 0) >= v for shape in shapes))
            best = max((shape.get(key, 0) for shape in shapes), default=0)
            raise SpecError(
                f"{request.field_for(key)}: each {request.name} actor asks for {_fmt(bundle)}, but no node"
                f"{where_scaled} has more than {best:g} {key}; lower the request or add such nodes"
            )
        for k, v in bundle.items():
            needed[k] = needed.get(k, 0) + v * request.min_actors
    short = {k: v for k, v in needed.items() if v > capacity.get(k, 0) + 1e-9}
    if short:
        k, v = next(iter(short.items()))
        raise SpecError(
            f"actors: the actor pools' minimum sizes need {v:g} {k} together, but the cluster has "
            f"{capacity.get(k, 0):g}{' even at its autoscaling limit' if node_types else ''}; lower the pools' MIN"
        )
    check_cuda(plan)


def check_cuda(plan: "JobPlan") -> None:
    """Each task that asked for a GPU (num_gpus, set or picked on a GPU cluster, or device cuda)
    can use CUDA where its forward actors run: a probe task with the actors' GPU and custom
    resources (the plan's, as the stage asks for them) imports torch there (the driver's torch
    says nothing about a worker's). Without it, the actors would fail at construction only
    after Ray Data had started reading, or, before this check existed, run on the CPU 50x
    slower. A task on a node the autoscaler has yet to start waits for it here, as its actors
    would. Needs an initialized Ray."""
    from pipelines.cuda_probe import cuda_problems

    forwards = {f.name: f for f in plan.forwards if f.num_gpus or f.operator.device.startswith("cuda")}
    requests = {
        name: (f.operator.device, {"num_gpus": f.num_gpus, "resources": dict(f.resources)}) for name, f in forwards.items()
    }
    for name, problem in cuda_problems(requests).items():
        f = forwards[name]
        device = f.operator.device
        field = "device" if device.startswith("cuda") else "num_gpus"
        asked = (
            f"device {device}" if field == "device"
            else f"num_gpus {f.num_gpus:g}" + (" (picked: the cluster has GPUs)" if f.gpus_picked else "")
        )
        raise SpecError(f"tasks[{name}].{field}: {asked}, but where its forward actors run {problem}")


def _fmt(bundle: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in bundle.items())


def one_line(e: BaseException, limit: int = 400) -> str:
    """An exception as one line of at most `limit` characters, credentials removed."""
    text = " ".join(str(e).split()) or type(e).__name__
    text = redact(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def redact(text: str) -> str:
    """`text` with any AWS credential of this process's environment replaced by ***."""
    for name in SECRET_ENV:
        value = os.environ.get(name)
        if value and len(value) >= 8:
            text = text.replace(value, "***")
    return text
