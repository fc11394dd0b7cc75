"""How the job's Parquet writer stores results: float vectors plain, small vocabularies as
dictionaries."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.offline.job import PARQUET_WRITE_OPTIONS


def column_bytes(table: pa.Table, **options) -> dict[str, tuple[int, tuple[str, ...]]]:
    """leaf column path -> (stored bytes, encodings) of `table` written with `options`."""
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)
    meta = pq.ParquetFile(io.BytesIO(buffer.getvalue())).metadata
    assert meta.num_row_groups == 1
    group = meta.row_group(0)
    return {
        group.column(i).path_in_schema: (group.column(i).total_compressed_size, group.column(i).encodings)
        for i in range(meta.num_columns)
    }


def test_embeddings_are_stored_plain_and_labels_as_a_dictionary():
    rows, dims = 256, 384  # one output file of MiniLM embeddings at the default block size
    vectors = np.random.default_rng(0).standard_normal((rows, dims)).astype(np.float32)
    table = pa.table(
        {
            "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
            "label": pa.array(["POSITIVE", "NEGATIVE", "NEUTRAL", "NEGATIVE"] * (rows // 4)),
        }
    )
    raw = rows * dims * 4
    default = column_bytes(table)
    ours = column_bytes(table, **PARQUET_WRITE_OPTIONS)
    # pyarrow's default keeps a dictionary of all 98,304 distinct floats plus an index each
    assert default["embedding.list.element"][0] > 1.3 * raw
    assert ours["embedding.list.element"][0] < 1.05 * raw
    size, encodings = ours["label"]
    assert "RLE_DICTIONARY" in encodings and size < 200
