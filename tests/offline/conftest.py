"""Fixtures for the offline (Ray Data) tests: one local Ray for the session, sized for 2 cores.

The jobs run with the sizing users get (pipelines/hardware.py), which fits a multi-task job's
actor pools into this `num_cpus=2` Ray together.
"""

from __future__ import annotations

import os

import pytest

@pytest.fixture(scope="session")
def ray_session():
    """The session's local Ray. Reuses one that is already up (and leaves it up then)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    from pipelines.local_ray import start_local_ray

    # No runtime_env: a local Ray's workers inherit this process's environment (the offline
    # flags of tests/conftest.py). The same settings as the Ray `taskray run` starts.
    start_local_ray(num_cpus=2, log_to_driver=False)
    yield ray
    ray.shutdown()


def write_parquet(path: str, columns: dict, rows_per_file: int | None = None) -> list[str]:
    """Write `columns` as one or more Parquet files under directory `path`; return the files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(path, exist_ok=True)
    table = pa.table(columns)
    step = rows_per_file or table.num_rows
    files = []
    for i, offset in enumerate(range(0, table.num_rows, step)):
        f = os.path.join(path, f"part-{i:03d}.parquet")
        pq.write_table(table.slice(offset, step), f)
        files.append(f)
    return files
