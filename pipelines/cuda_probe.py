"""Whether torch can use CUDA where a model's actors or replicas will run: a probe task asks
for the same Ray resources and imports torch there (the driver's torch says nothing about a
worker node's). Both paths call it before any data is read or any replica starts: the job's
preflight (pipelines/offline/preflight.py) and `taskray serve` (pipelines/serve/runner.py)."""

from __future__ import annotations


def cuda_problems(requests: dict[str, tuple[str, dict]]) -> dict[str, str]:
    """{name: why torch cannot use CUDA} for each `name: (device, ray resource options)` whose
    probe task, run with those resources, finds CUDA unusable. Needs an initialized Ray."""
    if not requests:
        return {}
    import ray

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe_cuda)
    refs = {name: probe.options(**options).remote(device) for name, (device, options) in requests.items()}
    results = {name: ray.get(ref) for name, ref in refs.items()}
    return {name: f"(node {node}) {problem}" for name, (problem, node) in results.items() if problem}


def _probe_cuda(device: str) -> tuple[str | None, str]:
    """In a Ray task that holds the resources the model's actors ask for: why torch cannot use
    CUDA there (None when it can, or when `device` is cpu), and the node's address."""
    import ray

    from operators.loading import cuda_problem

    return (None if device == "cpu" else cuda_problem()), ray.util.get_node_ip_address()
