"""The S3 test endpoint itself: data round-trips through moto, and the fault proxy really makes
the endpoint fail for a bounded time and then heals. The job-level S3 tests rely on both."""

from __future__ import annotations

import time

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest


def test_parquet_round_trip_through_env_and_explicit_filesystems(s3):
    table = pa.table({"id": ["a", "b", "c"], "text": ["x", "y", "z"]})
    # Plain s3:// URIs must reach moto from the AWS_* environment alone, as jobs do.
    pq.write_table(table, s3.uri("fixture/rt.parquet"))
    assert pq.read_table(s3.uri("fixture/rt.parquet"), filesystem=s3.s3fs()).equals(table)
    assert pq.read_table(f"{s3.bucket}/fixture/rt.parquet", filesystem=s3.pyarrow_fs()).equals(table)
    assert s3.list_keys("fixture/") == ["fixture/rt.parquet"]


@pytest.mark.parametrize("mode", ["reset", "http503"])
def test_fault_proxy_fails_then_heals(s3, mode):
    pq.write_table(pa.table({"id": [1]}), s3.uri(f"fixture/{mode}.parquet"))
    refused = s3.proxy.refused
    # One attempt: the SDK's own retries would only make this test slower.
    fail_fast = s3.pyarrow_fs(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1))
    with s3.proxy.outage(mode=mode):
        with pytest.raises(OSError):
            pq.read_table(f"{s3.bucket}/fixture/{mode}.parquet", filesystem=fail_fast)
        # Checks go around the proxy, so they still see the data during the outage.
        assert f"fixture/{mode}.parquet" in s3.list_keys("fixture/")
    assert s3.proxy.refused > refused
    assert pq.read_table(s3.uri(f"fixture/{mode}.parquet")).num_rows == 1


def test_timed_outage_heals_by_itself(s3):
    s3.proxy.fail_for(0.5)
    assert s3.proxy.faulty
    time.sleep(0.8)
    assert not s3.proxy.faulty
    pq.write_table(pa.table({"id": [1]}), s3.uri("fixture/healed.parquet"))
