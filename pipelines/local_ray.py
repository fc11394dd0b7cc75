"""The Ray that taskray starts on this machine when it is given no cluster (`taskray run`,
`taskray serve`, label(), the tests' own Rays): one way to start it, with one set of settings.

    start_local_ray(num_cpus=2)      # ray.init(address="local", ...) with the settings below
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)

# Raylet settings for a Ray that taskray starts itself (cluster.yaml sets the same as RAY_<name>
# environment variables). Ray kills a worker process idle for 1 s once there are more workers
# than CPUs. Read and write tasks ask for a fraction of a CPU (pipelines/hardware.py), so more
# of them run than there are CPUs: each finished task's worker was killed, and the next task
# started a new process that imported ray.data and pyarrow again (~2.5 s of CPU).
# classify-images, 3,000 images on 2 CPUs: 107 -> 85 s of CPU, 56 -> 43 s wall
# (benchmarks/RESULTS.md). Idle workers now live 60 s.
LOCAL_RAY_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}
# Ray waits a fixed 30 s for a new raylet to register with its GCS (ray/_private/node.py, not
# configurable). A machine that is briefly oversubscribed (another job's start-up, a test
# suite) can miss that window once and make it the next time; measured here twice in a row at
# a load average of 90. Anything else that fails a start is not retried.
START_ATTEMPTS = 3
_START_TIMEOUT = "timed out during startup"


def start_local_ray(**init_kwargs: Any) -> None:
    """`ray.init` of a fresh Ray on this machine. "local" always starts one: a bare ray.init()
    would join whatever cluster last registered itself here (/tmp/ray/ray_current_cluster).

    No dashboard (its head and module processes start beside the job's workers and take the
    cores they need; nothing of taskray's reads it). `init_kwargs` go to `ray.init` as they
    are, `_system_config` on top of LOCAL_RAY_SYSTEM_CONFIG. No runtime_env is needed for
    environment variables: the raylet is this process's child and its workers the raylet's, so
    they inherit this environment (a runtime_env would start every worker through Ray's
    setup_worker.py, a second interpreter, and could not use the workers Ray prestarted).
    """
    import ray

    init_kwargs.setdefault("include_dashboard", False)
    init_kwargs["_system_config"] = {**LOCAL_RAY_SYSTEM_CONFIG, **init_kwargs.get("_system_config", {})}
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            ray.init(address="local", **init_kwargs)
            return
        except Exception as e:  # Ray raises a bare Exception for a start-up timeout
            if _START_TIMEOUT not in str(e) or attempt == START_ATTEMPTS:
                raise
            logger.warning("local Ray missed its start-up window (attempt %d of %d); starting it again", attempt, START_ATTEMPTS)
            ray.shutdown()
