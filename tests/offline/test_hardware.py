"""The sizing taskray picks from the hardware (pipelines/hardware.py), on fake node profiles:
CPU-only nodes of 2 and 16 cores, a multi-node CPU cluster, GPU nodes, and the 2-CPU test Ray
that every pool must fit. No Ray; the GPU layout runs end to end in test_tasks_end_to_end.py
through `preprocess_pool_on_cpu()`."""

from __future__ import annotations

import pytest

from pipelines import hardware
from pipelines.hardware import HEADROOM_CPUS, Hardware, Node, preprocess_pool_on_cpu
from pipelines.spec import build_job_spec


def job(*tasks: str, **fields):
    """A spec of `tasks` (task ids; `name` set where one repeats) with job-level `fields`."""
    task_fields = fields.pop("task_fields", {})
    specs = [{"task": t, "model": "m", "name": f"t{i}", **task_fields} for i, t in enumerate(tasks)]
    return build_job_spec({"input": "i", "output": "o", "tasks": specs, **fields}, {})


def pick_sizing(spec, hw: Hardware):
    """The sizing of a job spec's tasks and block_rows."""
    return hardware.pick_sizing(spec.tasks, hw, spec.block_rows)


def cpu_nodes(cores: float, count: int = 1) -> Hardware:
    return Hardware(tuple(Node(cores) for _ in range(count)), "fake")


def forward(sizing, i: int = 0):
    return sizing.tasks[f"t{i}"]


def reserved(sizing) -> float:
    """Logical CPUs of every pool at its largest, per node (one node)."""
    pre = sizing.preprocess_cpus * sizing.preprocess_actors[1]
    return pre + sum(t.num_cpus * t.actors[1] for t in sizing.tasks.values())


def test_two_core_cpu_node_gets_the_measured_setup():
    # benchmarks/RESULTS.md: inline decoding, 1 actor; text and audio 2 calls of 1 thread;
    # images 1 call of 1 thread plus 2 decoding calls; embeddings' blocks 4x; audio 64-row blocks
    hw = cpu_nodes(2)
    text = pick_sizing(job("feature-extraction"), hw)
    assert text.preprocess == "inline" and (text.block_rows, text.block_growth) == (256, 4.0)
    t = forward(text)
    assert (t.actors, t.forward_calls, t.torch_threads, t.concurrent_calls, t.num_gpus) == ((1, 1), 2, 1, 2, 0.0)
    image = forward(pick_sizing(job("image-classification"), hw))
    assert (image.forward_calls, image.torch_threads, image.concurrent_calls, image.batch_size) == (1, 1, 3, 64)
    asr = pick_sizing(job("automatic-speech-recognition"), hw)
    assert (forward(asr).forward_calls, forward(asr).torch_threads, forward(asr).concurrent_calls) == (2, 1, 4)
    assert (asr.block_rows, asr.block_growth) == (64, 1.0)
    assert forward(pick_sizing(job("text-classification"), hw)).concurrent_calls == 2  # text decodes nothing


def test_larger_cpu_node_splits_its_cores():
    hw = cpu_nodes(16)
    text = forward(pick_sizing(job("feature-extraction"), hw))
    assert (text.forward_calls, text.torch_threads) == (2, 8)
    image = forward(pick_sizing(job("image-classification"), hw))
    assert (image.forward_calls, image.torch_threads, image.concurrent_calls) == (1, 8, 5)  # at most 4 decoding
    two = pick_sizing(job("text-classification", "image-classification"), hw)
    assert forward(two, 0).torch_threads * forward(two, 0).forward_calls == 8  # two tasks share the cores


def test_cpu_cluster_gets_one_forward_actor_per_node():
    sizing = pick_sizing(job("feature-extraction"), cpu_nodes(16, count=4))
    t = forward(sizing)
    assert t.actors == (1, 4)
    # more than half a node each, so Ray never packs two onto one node; headroom left
    assert 16 / 2 < t.num_cpus <= 16 - HEADROOM_CPUS


def test_every_pool_fits_the_two_cpu_test_ray_with_room_for_read_write_and_resume():
    hw = cpu_nodes(2)
    for tasks in [("feature-extraction",), ("text-classification", "image-classification", "automatic-speech-recognition")]:
        inline = pick_sizing(job(*tasks), hw)
        with preprocess_pool_on_cpu():
            pool = pick_sizing(job(*tasks), hw)
        assert pool.preprocess == "pool" and pool.preprocess_actors == (1, 1)
        assert all(t.concurrent_calls == t.forward_calls for t in pool.tasks.values())  # nothing decodes in them
        for sizing in (inline, pool):
            assert reserved(sizing) <= 2 - HEADROOM_CPUS + 1e-9
    assert pick_sizing(job("feature-extraction"), hw).preprocess == "inline"  # the context restored it


def test_gpu_node_preprocesses_in_a_pool_and_gives_each_gpu_an_actor():
    one = pick_sizing(job("image-classification"), Hardware((Node(16, 1),), "fake"))
    t = forward(one)
    assert one.preprocess == "pool" and one.preprocess_actors == (1, int(16 - 1 - HEADROOM_CPUS))
    assert (t.num_gpus, t.actors, t.num_cpus, t.forward_calls, t.concurrent_calls) == (1.0, (1, 1), 1.0, 2, 2)
    eight = pick_sizing(job("text-classification", "feature-extraction"), Hardware((Node(4), Node(64, 8)), "fake"))
    assert [(t.num_gpus, t.actors) for t in eight.tasks.values()] == [(0.5, (1, 8))] * 2  # two tasks share each GPU


def test_gpu_nodes_the_autoscaler_can_add_count_as_gpus():
    hw = Hardware((Node(4),), "fake", scalable_gpu_nodes=(Node(8, 1),))
    assert pick_sizing(job("text-classification"), hw).preprocess == "pool"


def test_the_jobs_own_settings_win_over_the_picks():
    spec = job("text-classification", block_rows=32, task_fields={"batch_size": 8, "actors": "2:3", "num_gpus": 0.25})
    sizing = pick_sizing(spec, cpu_nodes(2))
    t = forward(sizing)
    assert (sizing.block_rows, t.batch_size, t.actors, t.num_gpus) == (32, 8, (2, 3), 0.25)
    assert sizing.preprocess == "pool"  # a job asking for GPUs gets the GPU layout


@pytest.mark.parametrize("hw", [cpu_nodes(2), Hardware((Node(16, 1),), "fake")])
def test_each_pick_has_a_reason_line(hw):
    lines = pick_sizing(job("automatic-speech-recognition"), hw).lines()
    assert lines[0] == "sized for fake"
    assert any(line.startswith("preprocess:") for line in lines)
    assert any(line.startswith("t0: forward actors:") for line in lines)
    assert all(("measured" in line or "reasoned" in line) for line in lines if line.startswith("t0: forward:"))
