"""How a job is sized, and a Serve model replica's torch threads: picked from the hardware, not
from user flags.

    hw = cluster_hardware()             # Ray is up: its live nodes (+ autoscaler node types)
    hw = local_hardware()               # --dry-run starts nothing: this machine, and it says so
    hw = current_hardware()             # whichever of the two applies now
    picks = pick_sizing(spec.tasks, hw, spec.block_rows)   # JobSizing: per job and per task, each with its reason
    threads = pick_replica_threads(task, num_cpus, num_gpus)  # a Serve model replica's, with its reason

pipelines/offline/plan.py turns the picks into the job's plan (the stages and each actor's bundle).

What is picked, per node kind (measured on the 2-core CPU-only node of benchmarks/RESULTS.md;
the rest is reasoned from those measurements and says so in `why`):

* CPU-only nodes. Decoding and tokenizing run inline, in the forward actor (measured: one
  process to start instead of two, no pass through the object store, no second pool on the
  same cores). One forward actor per node, computing on that node's cores (reasoned: one
  start-up and one copy of the weights per node; two 1-thread actors measured the same as one
  2-thread actor and started later). Text and audio run 2 forward calls at once, each on
  half the cores (measured on 2 cores: 2 calls of 1 thread; a call running alone takes the
  idle threads, operators/threads.py). Images run 1 forward call on half the cores and
  decode in as many extra concurrent calls as there are cores, at most 4 (measured on 2 cores:
  1 thread, 2 decoding calls; audio decodes the same way). Several tasks split the cores.
* GPU nodes (any GPU in the cluster, or a GPU node type the autoscaler can start). Decoding
  runs in a CPU actor pool, so the device never waits on it; one forward actor per GPU
  (`num_gpus` 1, shared evenly by the tasks of a multi-task job), pool 1:<GPUs>, 2 concurrent
  calls so that one call's host work (collating, postprocess, Arrow) overlaps the other's
  device work, 1 torch thread per call (the device computes). All reasoned; not measured yet.
* Blocks: 256 rows, 64 when a task reads audio (measured: the first forward waits for the
  first block to decode); a block byte target 4x the input rows' when a task's results
  outgrow its inputs (embeddings; measured), else 1x.

CPU reservations are tokens, not cores: they are sized from the cluster's logical CPUs so that
every actor pool plus the read and write tasks and resume's 1-CPU CheckpointFilter actor fit
(a 2-CPU Ray with 1-CPU actors never started its read: RESULTS.md), while torch threads follow
the node's CPUs. A local Ray that taskray starts has as many logical CPUs as the machine has
cores, so the two agree there.

A Serve model replica (`taskray serve`; `pick_replica_threads`) is sized from its own
reservation instead: the replicas of several applications share a node in ways no one process
sees, and the reservation is what the config says each may use. It runs one batch at a time on
one inference thread, decoding then forward, so its one forward call takes all its cores, as a
lone forward call of `taskray run` takes its actor's idle threads; 1 thread below one CPU (a
share of cores) and on a GPU (the device computes), as for `run`'s GPU actors; never more than
the machine's cores.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from pipelines.spec import TaskSpec

# Logical CPUs left unreserved on a node for Ray Data's read and write tasks (IO_CPUS each) and
# the 1-CPU CheckpointFilter actor that Ray Data adds on --resume.
HEADROOM_CPUS = 1.5
IO_CPUS = 0.25
# Floor of a picked actor reservation, so that a pool far larger than the cluster (--actors
# 100:100 on 2 CPUs) is refused by the preflight instead of packed onto it.
MIN_ACTOR_CPUS = 0.05
# Concurrent decoding calls per forward actor for images and audio: one per core, but not so
# many that the decoded blocks waiting for forward crowd the actor's memory (reasoned).
MAX_DECODE_CALLS = 4
# The byte target of a block, in input rows' bytes, for tasks whose results outgrow their
# inputs: sized for the input alone, embeddings (11x) were cut into small blocks and the
# forward actor sat idle between them (measured, see pipelines/offline/job.py).
GROWING_RESULTS_BLOCK_GROWTH = 4.0
TEXT_BLOCK_ROWS = 256
AUDIO_BLOCK_ROWS = 64

# Tests run the pool-preprocess graph (the GPU layout) on a CPU-only Ray through
# `preprocess_pool_on_cpu()`; not a user setting.
_FORCE_PREPROCESS_POOL = False


@contextlib.contextmanager
def preprocess_pool_on_cpu() -> Iterator[None]:
    """Plan jobs with a Preprocess actor pool even without GPUs (tests: that path stays tested
    end to end on a CPU-only machine)."""
    global _FORCE_PREPROCESS_POOL
    saved, _FORCE_PREPROCESS_POOL = _FORCE_PREPROCESS_POOL, True
    try:
        yield
    finally:
        _FORCE_PREPROCESS_POOL = saved


@dataclass(frozen=True)
class Node:
    """One node as Ray counts it: logical CPUs (= cores unless started with --num-cpus) and GPUs."""

    cpus: float
    gpus: float = 0.0


@dataclass(frozen=True)
class Hardware:
    """The nodes a job is sized for, and where that view came from (printed by --dry-run)."""

    nodes: tuple[Node, ...]
    source: str
    # GPU node types the autoscaler can start, when none is up yet (cluster.yaml's GPU workers).
    scalable_gpu_nodes: tuple[Node, ...] = ()

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    @property
    def gpus(self) -> float:
        return sum(n.gpus for n in self.nodes) or sum(n.gpus for n in self.scalable_gpu_nodes)

    @property
    def cpu_nodes(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.cpus > 0) or (Node(1.0),)


def local_hardware() -> Hardware:
    """This machine, as the local Ray that `taskray run` would start sees it."""
    cores = machine_cores()
    gpus = 0
    with contextlib.suppress(Exception):  # no usable torch/CUDA: no GPU to plan for
        import torch

        gpus = torch.cuda.device_count()
    where = "this machine (--dry-run starts no Ray; a cluster given by RAY_ADDRESS or ray_address is sized when the job runs)"
    return Hardware((Node(float(cores), float(gpus)),), f"{where}: {cores} CPUs, {gpus} GPUs")


def machine_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cluster_hardware() -> Hardware:
    """The live nodes of the running Ray, plus GPU node types its autoscaler may add."""
    import ray

    nodes = tuple(
        Node(float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
        for n in ray.nodes()
        if n.get("Alive")
    )
    types, _ = autoscaler_limits()
    scalable = tuple(Node(float(t.get("CPU", 0)), float(t.get("GPU", 0))) for t in types if t.get("GPU"))
    cpus, gpus = sum(n.cpus for n in nodes), sum(n.gpus for n in nodes)
    source = f"the Ray cluster: {len(nodes)} node(s), {cpus:g} CPUs, {gpus:g} GPUs"
    if scalable and not gpus:
        source += f" (the autoscaler can add GPU nodes of {scalable[0].gpus:g} GPUs)"
    return Hardware(nodes, source, scalable)


def current_hardware() -> Hardware:
    """The running Ray's nodes, else (nothing started, e.g. --dry-run) this machine."""
    import ray

    return cluster_hardware() if ray.is_initialized() else local_hardware()


def autoscaler_limits() -> tuple[list[dict[str, float]], dict[str, float]]:
    """The autoscaler's node types that can be started, and the most of each resource it may
    reach; empty on a cluster without an autoscaler (a plain local Ray)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        most = state.get_max_resources_from_cluster_config() or {}
    except Exception:  # a private API: when it is absent or fails, judge by the live nodes alone
        return [], {}
    if config is None:
        return [], {}
    types = [dict(g.resources) for g in config.node_group_configs if g.resources and g.max_count != 0]
    return types, {k: float(v) for k, v in most.items()}


@dataclass(frozen=True)
class TaskSizing:
    """The forward stage of one task: its actors' Ray resources and how they compute."""

    num_cpus: float
    num_gpus: float
    actors: tuple[int, int]
    torch_threads: int  # per forward call; a call running alone takes the others' too
    forward_calls: int  # calls inside the model at once
    concurrent_calls: int  # forward_calls, plus the calls decoding images or audio inline
    batch_size: int
    why: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobSizing:
    """Everything `taskray run` sizes for the hardware; `why` holds one line per pick."""

    hardware: Hardware
    preprocess: Literal["inline", "pool"]
    preprocess_cpus: float
    preprocess_actors: tuple[int, int]
    io_cpus: float
    block_rows: int
    block_growth: float
    tasks: dict[str, TaskSizing] = field(default_factory=dict)
    why: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The picks and their reasons, for --dry-run."""
        out = [f"sized for {self.hardware.source}", *self.why]
        for name, t in self.tasks.items():
            out += [f"{name}: {line}" for line in t.why]
        return out


def input_kind(task: "TaskSpec") -> Literal["text", "image", "audio"]:
    """What the forward actor decodes: the operator's modality (audio and images: decoding
    threads help; text: tokenizing)."""
    from operators import get_operator

    return get_operator(task.task).modality


def pick_sizing(tasks: Sequence["TaskSpec"], hw: Hardware, block_rows: int | None = None) -> JobSizing:
    """The sizing of `tasks` on `hw`. User settings (each task's batch_size, num_gpus, actors;
    the job's `block_rows`) win over the picks; everything else is picked here."""
    from operators import get_operator

    gpu = hw.gpus > 0 or any(t.num_gpus for t in tasks)  # a job's num_gpus asks for GPU nodes
    pool = gpu or _FORCE_PREPROCESS_POOL
    n_tasks = len(tasks)
    nodes = hw.cpu_nodes
    node_cpus = min(n.cpus for n in nodes)  # the smallest node must hold its share of every pool
    why: list[str] = []

    if pool:
        why.append(
            "preprocess: a CPU actor pool feeding the forward actors ("
            + ("GPU cluster: the device never waits on decoding; reasoned" if gpu else "forced by a test")
            + ")"
        )
    else:
        why.append("preprocess: inline in each forward actor (CPU-only: no extra process or pool on the same cores; measured)")

    # Actors per node, per pool, so that their reservations plus the headroom fit each node.
    task_actors = [t.actors or _default_actors(gpu, hw, len(nodes)) for t in tasks]
    per_node = [math.ceil(hi / len(nodes)) for _, hi in task_actors]
    cpu_slots = (0 if gpu else sum(per_node)) + (1 if pool and not gpu else 0)

    def share(slots: float, cpus: float = node_cpus) -> float:
        budget = max(cpus - HEADROOM_CPUS, cpus * 0.25)
        return max(MIN_ACTOR_CPUS, math.floor(budget / max(1, slots) * 1000) / 1000)  # down: they must fit

    if gpu:
        # Up to 1 CPU per actor for the host side of its device calls, less on small nodes:
        # a GPU node holds an actor per GPU and task, and room for a Preprocess actor.
        gpu_nodes = [n for n in hw.nodes if n.gpus] or list(hw.scalable_gpu_nodes) or list(nodes)
        smallest = min(gpu_nodes, key=lambda n: n.cpus)
        gpu_actor_cpus = min(1.0, share(max(1.0, smallest.gpus) * n_tasks + 1, smallest.cpus))

    picked: dict[str, TaskSizing] = {}
    for t, actors, on_node in zip(tasks, task_actors, per_node):
        cpus = gpu_actor_cpus if gpu else share(cpu_slots)
        picked[t.column_prefix] = _task_sizing(t, gpu, pool, actors, on_node, n_tasks, node_cpus, hw, cpus)

    if pool and gpu:
        forward_cpus = sum(s.num_cpus * s.actors[1] for s in picked.values())
        spare = max(0.0, hw.cpus - forward_cpus - HEADROOM_CPUS * len(nodes))
        pre_cpus = min(1.0, share(2))
        pre_actors = (1, max(1, int(spare / pre_cpus)))
        why.append(
            f"preprocess pool: {pre_actors[0]}:{pre_actors[1]} actors of {pre_cpus:g} CPU "
            "(the CPUs the forward actors and headroom leave; reasoned)"
        )
    elif pool:
        pre_cpus, pre_actors = share(cpu_slots), (1, 1)
        why.append(f"preprocess pool: 1:1 actor of {pre_cpus:g} CPU (a share of the node, like the forward actors)")
    else:
        pre_cpus, pre_actors = 0.0, (0, 0)

    kinds = {input_kind(t) for t in tasks}
    if block_rows is not None:
        why.append(f"block_rows: {block_rows} (set by the job)")
    elif "audio" in kinds:
        block_rows = AUDIO_BLOCK_ROWS
        why.append(f"block_rows: {block_rows} (audio: the first forward waits for the first block to decode; measured)")
    else:
        block_rows = TEXT_BLOCK_ROWS
        why.append(f"block_rows: {block_rows}")
    if any(get_operator(t.task).results_outgrow_inputs for t in tasks):
        growth = GROWING_RESULTS_BLOCK_GROWTH
        why.append(f"block bytes: {growth:g}x the input rows' (embeddings outgrow their inputs; measured)")
    else:
        growth = 1.0
        why.append("block bytes: 1x the input rows' (results smaller than their inputs)")
    why.append(f"read and write tasks: {IO_CPUS:g} CPU each; {HEADROOM_CPUS:g} CPUs per node left unreserved for them and resume's filter")
    return JobSizing(hw, "pool" if pool else "inline", pre_cpus, pre_actors, IO_CPUS, block_rows, growth, picked, tuple(why))


def _default_actors(gpu: bool, hw: Hardware, cpu_nodes: int) -> tuple[int, int]:
    if gpu:
        return (1, max(1, int(hw.gpus)))
    return (1, cpu_nodes)


def _task_sizing(
    t: "TaskSpec", gpu: bool, pool: bool, actors: tuple[int, int], on_node: int, n_tasks: int,
    node_cpus: float, hw: Hardware, cpus: float,
) -> TaskSizing:
    from operators import get_operator

    kind = input_kind(t)
    batch = t.batch_size or get_operator(t.task).rows_per_call
    pool_note = "" if t.actors is None else " (set by the job)"
    if gpu:
        num_gpus = t.num_gpus if t.num_gpus is not None else round(1.0 / n_tasks, 4)
        why = (
            f"forward actors: {actors[0]}:{actors[1]}{pool_note}, {num_gpus:g} GPU and {cpus:g} CPU each"
            + (" (one per GPU; reasoned)" if t.actors is None else ""),
            "forward: 2 calls at once of 1 torch thread (host work overlaps the device; reasoned)",
        )
        return TaskSizing(cpus, num_gpus, actors, 1, 2, 2, batch, why)
    # CPU: this task's actors on a node share its cores with the other tasks' actors.
    cores = max(1, int(node_cpus) // max(1, n_tasks * on_node))
    calls = 1 if kind == "image" or cores < 2 else 2
    threads = max(1, cores // 2) if kind == "image" else max(1, cores // calls)
    decode = 0 if pool or kind == "text" else min(MAX_DECODE_CALLS, cores)
    why = [
        f"forward actors: {actors[0]}:{actors[1]}{pool_note}, reserving {cpus:g} CPU each"
        + (" (one per node; reasoned)" if t.actors is None else ""),
    ]
    if kind == "image":
        why.append(f"forward: 1 call on {_n(threads, 'torch thread')} (image forward on half the cores; measured on 2 cores)")
    else:
        why.append(
            f"forward: {_n(calls, 'call')} at once of {_n(threads, 'torch thread')}"
            + (f", a lone call taking all {calls * threads}" if calls > 1 else "")
            + (" (measured on 2 cores: 2 calls of 1 thread)" if calls == 2 else "")
        )
    if decode:
        why.append(f"decoding: {_n(decode, 'more concurrent call')} decoding {kind} in threads (one per core; measured on 2 cores)")
    return TaskSizing(cpus, t.num_gpus or 0.0, actors, threads, calls, calls + decode, batch, tuple(why))


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class ReplicaThreads:
    """The torch threads of a Serve replica that holds a model; `why` says how they were picked."""

    torch_threads: int
    why: tuple[str, ...]


def pick_replica_threads(
    task: str, num_cpus: float, num_gpus: float = 0.0, *, device: str = "auto",
    torch_threads: int | None = None, cores: int | None = None,
) -> ReplicaThreads:
    """The torch threads of a Serve model replica of `task` that Ray gave `num_cpus` CPUs and
    `num_gpus` GPUs, on a machine of `cores` cores (None: not capped). The endpoint's own
    `torch_threads` wins.

    The replica runs one batch at a time on one inference thread (TaskEndpoint's single-worker
    executor; TaskModel's max_ongoing_requests 1), decoding and then forward, so there is one
    forward call and no decoding beside it, unlike `taskray run`'s actors (pick_sizing).
    """
    from operators import get_operator

    if torch_threads is not None:
        return ReplicaThreads(torch_threads, (f"torch threads: {torch_threads} (set by the endpoint's torch_threads)",))
    reserved = f"{num_cpus:g} CPU{'' if num_cpus == 1 else 's'} reserved"
    on_gpu = device.startswith("cuda") or (device == "auto" and num_gpus > 0)
    if on_gpu:
        # As `run` sizes its GPU actors: the host side collates and postprocesses. Reasoned;
        # no GPU was lent to measure it.
        return ReplicaThreads(1, (
            "torch threads: 1 (on a GPU: the device computes, the host only decodes, collates and "
            "postprocesses, as for `taskray run`'s GPU actors; reasoned)",
        ))
    if num_cpus < 1:
        # Ray gives such a process OMP_NUM_THREADS=1 for the same reason.
        return ReplicaThreads(1, (
            f"torch threads: 1 ({reserved}: the replica shares cores with other processes, and "
            "threads beyond its share would contend for them)",
        ))
    threads = int(num_cpus)  # down, as `run` counts a node's cores: a part of a core is shared
    # One forward call on all the replica's cores, as a lone call of `run` takes its actor's
    # idle threads (operators/threads.py). Measured for text and audio on 2 cores
    # (benchmarks/RESULTS.md: one text call on 2 threads 92.9 rows/s against 58.0 on 1; the
    # tiny wav2vec2 93.2 clips/s against 66.6); reasoned for images. `run` gives an image
    # forward half the cores because its other calls decode on the rest at the same time; here
    # the decoding runs before the forward, on the same thread, so that half would idle.
    kind = get_operator(task).modality
    decoding = {
        "image": ": images decode before it on the same thread, not beside it as in `taskray run`, "
        "whose image forward gets half the cores",
        "audio": ": audio decodes before it on the same thread",
    }.get(kind, "")
    picked = f"{threads}, one per whole CPU ({reserved}"
    if cores is not None and threads > cores:  # Ray was told of more CPUs than there are cores
        threads = max(1, cores)
        picked = f"{threads}, this machine's cores ({reserved}, more than it has"
    why = (
        f"torch threads: {picked}; one batch at a time on one inference thread, so its forward call "
        f"takes every core, as a lone forward call of `taskray run` takes its actor's idle threads{decoding})",
    )
    return ReplicaThreads(threads, why)
