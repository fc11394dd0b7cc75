"""Input datasets: Parquet shards, JSONL/CSV text, directories of image or audio files, and
WebDataset tar shards.

Every format but WebDataset is read by one Ray Data datasource, `TaskrayFileDatasource`, that
yields Arrow tables of at most `block_rows` rows and adds the id column *at read time*. The id
must exist at the read: Ray Data's checkpointing filters already-written ids right after the
Read operator, before any map, so an id derived in a later `map_batches` could not be used for
resume. That is why `ray.data.read_parquet`/`read_binary_files` are not used here.

WebDataset shards go through Ray Data's own `read_webdataset`, whose `decoder` hook runs inside
the read for every sample: `WebDatasetRows` turns a sample's members into the plan's columns
and adds the id there, so resume works as for the other formats. Members stay encoded bytes
(Ray's default decoder would decode images at read time, where a corrupt file fails the whole
read); the operators decode them, so a corrupt member fails its row only.

Derived ids are stable: `<path relative to the input root>#<row index>` for table formats,
the relative path for media files and `<shard relative path>#<sample key>` for WebDataset, so
a rerun over the same data produces the same ids.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from pipelines.spec import JobSpec, SpecError
from pipelines.storage import Location, list_files, uri_of

if TYPE_CHECKING:
    import pyarrow

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
TABLE_EXTENSIONS = {"parquet": (".parquet", ".pq"), "jsonl": (".jsonl", ".json", ".ndjson"), "csv": (".csv",)}
MEDIA_ROLE = {"images": "image", "audio": "audio"}
WEBDATASET_EXTENSIONS = (".tar", ".tgz", ".tar.gz")
# WebDataset members decoded to str at read time (UTF-8); every other member stays bytes.
TEXT_MEMBERS = ("txt", "text")
JSON_MEMBER = "json"
# Samples of the first shard whose members name the columns (the check) and size the blocks.
WEBDATASET_PEEK = 16
# A boolean column the WebDataset reader adds, only under a --limit that ends inside a shard:
# the rows past the limit, dropped right after the read.
BEYOND_LIMIT = "__beyond_limit__"
DERIVED_ID = "id"
MIN_BLOCK_BYTES = 4096


@dataclass
class SourcePlan:
    """What to read, resolved on the driver before any work starts."""

    format: str
    location: Location
    files: list[str]
    roots: dict[str, str]  # file -> directory its derived id is relative to
    columns: list[str]  # input columns to read (roles, kept columns, id)
    id_column: str
    derive_id: bool
    media_column: str | None = None  # images/audio: the column that holds the file bytes
    row_caps: dict[str, int] = field(default_factory=dict)  # file -> rows (samples) to read (limit)
    bytes_per_row: float = 1024.0  # estimated in memory, from the first file; sizes blocks
    # The read columns and the id as the first file types them (WebDataset: its first samples).
    # Other files may type a column otherwise (CSV and JSONL types are inferred per file; a
    # column that is all null in one file is typed `null` there): see pipelines/offline/job.py finalize.
    schema: "pyarrow.Schema | None" = None

    def block_bytes(self, block_rows: int) -> int:
        """Ray Data sizes blocks in bytes; this is the byte size of `block_rows` input rows."""
        return max(MIN_BLOCK_BYTES, int(self.bytes_per_row * block_rows))


def plan_source(spec: JobSpec) -> SourcePlan:
    """Expand the input URIs, pick the format, check that the needed columns exist.

    Raises SpecError naming the field for a missing column or an empty input: a clear spec
    error before any work starts.
    """
    files: list[str] = []
    roots: dict[str, str] = {}
    location: Location | None = None
    for uri in spec.input:
        try:
            loc, found, root = list_files(uri, spec.storage)
        except FileNotFoundError as e:
            raise SpecError(f"input: {e}") from None
        if location is not None and type(loc.filesystem) is not type(location.filesystem):
            raise SpecError(f"input: all inputs must be on one filesystem, got {spec.input}")
        location = loc
        for f in found:
            roots.setdefault(f, root)
            if f not in files:
                files.append(f)
    assert location is not None
    fmt = spec.input_format if spec.input_format != "auto" else _guess_format(files)
    files = [f for f in files if f.lower().endswith(_extensions(fmt))]
    if not files:
        raise SpecError(f"input: no {fmt} files under {spec.input}")

    needed_roles = {role: col for t in spec.tasks for role, col in t.role_columns().items()}
    if fmt in MEDIA_ROLE:
        media_role = MEDIA_ROLE[fmt]
        media_cols = {col for t in spec.tasks for role, col in t.role_columns().items() if role == media_role}
        other = sorted({role for role in needed_roles if role != media_role})
        if other:
            raise SpecError(f"input_format: a directory of {fmt} has only the {media_role!r} role, but tasks need {other}")
        if len(media_cols) > 1:
            raise SpecError(f"columns: tasks map {media_role!r} to different columns {sorted(media_cols)}; use one")
        media_column = media_cols.pop() if media_cols else media_role
        keep_bad = sorted(set(spec.keep_columns) - {"path"})
        if keep_bad:
            raise SpecError(f"keep_columns: a directory of {fmt} has only the column 'path' to keep, got {keep_bad}")
        if spec.id_column is not None:
            raise SpecError(f"id_column: a directory of {fmt} has no columns; ids are the file paths")
        plan = SourcePlan(fmt, location, files, roots, [media_column, *spec.keep_columns], DERIVED_ID, True, media_column)
        plan.schema = _media_schema(plan)
    elif fmt == "webdataset":
        if spec.id_column is not None:
            raise SpecError("id_column: WebDataset ids are '<shard>#<key>'; a shard has no id column")
        columns = list(dict.fromkeys([*(c for t in spec.tasks for c in t.role_columns().values()), *spec.keep_columns]))
        samples = _check_webdataset_columns(spec, location, files[0], columns)
        plan = SourcePlan(fmt, location, files, roots, columns, DERIVED_ID, True)
        plan.schema = _webdataset_schema(plan, samples)
    else:
        first_schema = _first_file_schema(fmt, location, files[0])
        schema_names = list(first_schema.names)
        id_column = spec.id_column or (DERIVED_ID if DERIVED_ID in schema_names else None)
        wanted = {
            **{f"tasks[{t.column_prefix}].columns.{role}": col for t in spec.tasks for role, col in t.role_columns().items()},
            **{"keep_columns": c for c in spec.keep_columns},
        }
        if spec.id_column is not None:
            wanted["id_column"] = spec.id_column
        missing = [(where, col) for where, col in wanted.items() if col not in schema_names]
        if missing:
            where, col = missing[0]
            raise SpecError(
                f"{where}: column {col!r} not found in {location.uri if len(files) == 1 else files[0]}; "
                f"columns are {schema_names}" + ("; map roles with --column ROLE=NAME" if "columns" in where else "")
            )
        derive = id_column is None
        id_column = id_column or DERIVED_ID
        # Every task's columns: two tasks may read one role from different columns.
        task_columns = [col for t in spec.tasks for col in t.role_columns().values()]
        columns = list(dict.fromkeys([*task_columns, *spec.keep_columns] + ([] if derive else [id_column])))
        plan = SourcePlan(fmt, location, files, roots, columns, id_column, derive)
        plan.schema = _table_schema(plan, first_schema)
    if spec.limit is not None:
        _apply_limit(plan, spec.limit)
    plan.bytes_per_row = _estimate_row_bytes(plan)
    return plan


def read_dataset(plan: SourcePlan, block_rows: int, num_cpus: float = 1.0):
    """The Ray Dataset of the input (lazy); each read task asks for `num_cpus`.

    Files are read in tables of `block_rows` rows. Ray then packs read output into blocks of
    up to DataContext.target_max_block_size bytes, so the caller sets that from
    `plan.block_bytes(block_rows)` for blocks of about `block_rows` rows.
    """
    import ray.data

    if plan.format == "webdataset":
        # Ray's reader emits up to 512 samples per block; DataContext.target_max_block_size
        # then cuts them to block size as for the other formats.
        ds = ray.data.read_webdataset(
            plan.files, filesystem=plan.location.filesystem, decoder=WebDatasetRows(plan), num_cpus=num_cpus
        )
        if plan.row_caps:
            ds = ds.map_batches(_drop_beyond_limit, batch_format="pyarrow", batch_size=None, num_cpus=num_cpus)
        return ds
    return ray.data.read_datasource(TaskrayFileDatasource(plan, block_rows), num_cpus=num_cpus)


def _guess_format(files: list[str]) -> str:
    for f in files:
        low = f.lower()
        for fmt, exts in TABLE_EXTENSIONS.items():
            if low.endswith(exts):
                return fmt
        if low.endswith(IMAGE_EXTENSIONS):
            return "images"
        if low.endswith(AUDIO_EXTENSIONS):
            return "audio"
        if low.endswith(WEBDATASET_EXTENSIONS):
            return "webdataset"
    raise SpecError(f"input_format: cannot guess the format of {files[:3]}; set --input-format")


def _extensions(fmt: str) -> tuple[str, ...]:
    return {"images": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS, "webdataset": WEBDATASET_EXTENSIONS}.get(fmt) or TABLE_EXTENSIONS[fmt]


def _first_file_schema(fmt: str, location: Location, path: str) -> "pyarrow.Schema":
    fs = location.filesystem
    if fmt == "parquet":
        import pyarrow.parquet as pq

        with fs.open_input_file(path) as f:
            return pq.read_schema(f)
    with fs.open_input_stream(path) as f:
        return read_text_table(fmt, f).schema


def _table_schema(plan: SourcePlan, first: "pyarrow.Schema") -> "pyarrow.Schema":
    """The columns the reader yields (TaskrayFileDatasource), typed as in the first file."""
    import pyarrow as pa

    fields = [first.field(c) for c in plan.columns]
    return pa.schema([*fields, pa.field(plan.id_column, pa.string())] if plan.derive_id else fields)


def _media_schema(plan: SourcePlan) -> "pyarrow.Schema":
    import pyarrow as pa

    fields = [pa.field(plan.id_column, pa.string()), pa.field(plan.media_column, pa.binary())]
    return pa.schema([*fields, pa.field("path", pa.string())] if "path" in plan.columns else fields)


def _webdataset_schema(plan: SourcePlan, samples: list[tuple[str, dict[str, bytes]]]) -> "pyarrow.Schema":
    """The columns typed by their values in the first samples (a member's bytes, a `.txt`
    member's text, a json field's value); `null` where none of them has one."""
    import pyarrow as pa

    fields = [pa.field(plan.id_column, pa.string())]
    for column in plan.columns:
        try:
            arrow_type = pa.array([webdataset_value(members, column) for _, members in samples]).type
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # json fields of mixed types: none to plan
            arrow_type = pa.null()
        fields.append(pa.field(column, arrow_type))
    return pa.schema(fields)


def read_text_table(fmt: str, stream) -> "pyarrow.Table":
    if fmt == "jsonl":
        import pyarrow.json as pajson

        return pajson.read_json(stream)
    import pyarrow.csv as pacsv

    return pacsv.read_csv(stream)


def _estimate_row_bytes(plan: SourcePlan) -> float:
    """Bytes per input row (only the columns read), from the first file: Parquet column-chunk
    sizes from the footer, media file sizes, or the parsed first JSONL/CSV file."""
    fs = plan.location.filesystem
    first = plan.files[0]
    if plan.format in MEDIA_ROLE:
        infos = fs.get_file_info(plan.files[:32])
        return max(1.0, sum(i.size or 0 for i in infos) / len(infos))
    if plan.format == "webdataset":
        samples = _peek_samples(plan.location, first, WEBDATASET_PEEK)
        return max(1.0, sum(len(v) for _, members in samples for v in members.values()) / max(1, len(samples)))
    if plan.format == "parquet":
        import pyarrow.parquet as pq

        with fs.open_input_file(first) as f:
            meta = pq.read_metadata(f)
        if meta.num_rows == 0:
            return 1024.0
        wanted = set(plan.columns)
        size = 0
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                column = group.column(c)
                if column.path_in_schema.split(".")[0] in wanted:
                    size += column.total_uncompressed_size
        return max(1.0, size / meta.num_rows)
    with fs.open_input_stream(first) as f:
        table = read_text_table(plan.format, f).select([c for c in plan.columns])
    return max(1.0, table.nbytes / max(1, table.num_rows))


def _count_rows(plan: SourcePlan, path: str) -> int:
    fs = plan.location.filesystem
    if plan.format in MEDIA_ROLE:
        return 1
    if plan.format == "webdataset":
        with fs.open_input_stream(path) as f:
            return sum(1 for _ in _tar_samples(f, read_data=False))
    if plan.format == "parquet":
        import pyarrow.parquet as pq

        with fs.open_input_file(path) as f:
            return pq.read_metadata(f).num_rows
    with fs.open_input_stream(path) as f:
        return read_text_table(plan.format, f).num_rows


def _apply_limit(plan: SourcePlan, limit: int) -> None:
    """Keep the first `limit` rows in file order, as a file list plus a cap on the last
    file: deterministic, so that a resumed run plans exactly the same rows."""
    remaining = limit
    kept = []
    for path in plan.files:
        if remaining <= 0:
            break
        n = _count_rows(plan, path)
        kept.append(path)
        if n > remaining:
            plan.row_caps[path] = remaining
        remaining -= n
    plan.files = kept


def _derived_ids(root: str, path: str, start: int, n: int) -> list[str]:
    rel = posixpath.relpath(path, root) if root else path
    return [f"{rel}#{start + i}" for i in range(n)]


def _media_id(root: str, path: str) -> str:
    return posixpath.relpath(path, root) if root else path


def _datasource_base():
    from ray.data.datasource import FileBasedDatasource

    return FileBasedDatasource


class TaskrayFileDatasource(_datasource_base()):  # type: ignore[misc]
    """One datasource for every input format; see the module docstring for why."""

    def __init__(self, plan: SourcePlan, block_rows: int):
        super().__init__(plan.files, filesystem=plan.location.filesystem)
        self._plan = plan
        self._block_rows = block_rows

    def get_name(self) -> str:
        return f"Read{self._plan.format.capitalize()}"

    def _open_input_source(self, filesystem, path: str, **open_args):
        # Parquet needs random access for its footer; the base class opens a stream.
        if self._plan.format == "parquet":
            return filesystem.open_input_file(path)
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f, path: str) -> Iterator["pyarrow.Table"]:
        import pyarrow as pa

        plan = self._plan
        root = plan.roots.get(path, "")
        cap = plan.row_caps.get(path)
        if plan.format in MEDIA_ROLE:
            columns: dict[str, Any] = {plan.id_column: [_media_id(root, path)], plan.media_column: pa.array([f.readall()], pa.binary())}
            if "path" in plan.columns:
                columns["path"] = [uri_of(plan.location, path)]
            yield pa.table(columns)
            return
        start = 0
        for table in self._tables(f):
            if cap is not None:
                if start >= cap:
                    return
                table = table.slice(0, cap - start)
            table = table.select(plan.columns)
            if plan.derive_id:
                table = table.append_column(plan.id_column, pa.array(_derived_ids(root, path, start, table.num_rows), pa.string()))
            start += table.num_rows
            yield table

    def _tables(self, f) -> Iterator["pyarrow.Table"]:
        import pyarrow as pa

        if self._plan.format == "parquet":
            import pyarrow.parquet as pq

            reader = pq.ParquetFile(f)
            for batch in reader.iter_batches(batch_size=self._block_rows, columns=self._plan.columns):
                yield pa.Table.from_batches([batch])
            return
        table = read_text_table(self._plan.format, f)
        for offset in range(0, table.num_rows, self._block_rows):
            yield table.slice(offset, self._block_rows)


def _tar_samples(stream, read_data: bool = True) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key, {member suffix: bytes}) per WebDataset sample of a tar stream, in order; with
    `read_data` False the values are the member sizes and the data is skipped. Grouped by
    the key rule of Ray's reader, so counts and checks agree with what it reads."""
    from ray.data._internal.datasource.webdataset_datasource import _base_plus_ext

    key, members = None, {}
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for info in tar:
            if not info.isreg():
                continue
            prefix, suffix = _base_plus_ext(info.name)
            if prefix is None:
                continue
            if prefix != key:
                if key is not None:
                    yield key, members
                key, members = prefix, {}
            members[suffix] = tar.extractfile(info).read() if read_data else info.size
    if key is not None:
        yield key, members


def _peek_samples(location: Location, path: str, n: int) -> list[tuple[str, dict[str, bytes]]]:
    """The first `n` samples of a shard (reads only as far as they go)."""
    out = []
    with location.filesystem.open_input_stream(path) as f:
        for sample in _tar_samples(f):
            out.append(sample)
            if len(out) >= n:
                break
    return out


def webdataset_value(members: dict[str, bytes], name: str) -> Any:
    """The value of column `name` in one WebDataset sample (`members`: suffix -> bytes, in
    tar order), or None when the sample has none:

    - a member suffix (`jpg`, `flac`, `seg.png`, `caption.txt`): its bytes; `.txt`/`.text`
      members as str (None when not UTF-8, so the row fails with an input error);
    - `image` / `audio`: the sample's first member with an image / audio extension;
    - `text`: its `txt` member;
    - else a top-level field of its `json` member (`question`, `context`, ...).
    """
    if name in members:
        return _member_value(name, members[name])
    media = {"image": IMAGE_EXTENSIONS, "audio": AUDIO_EXTENSIONS}.get(name)
    if media is not None:
        return next((data for suffix, data in members.items() if ("." + suffix.lower()).endswith(media)), None)
    if name == "text" and "txt" in members:
        return _member_value("txt", members["txt"])
    if JSON_MEMBER in members:
        try:
            fields = json.loads(members[JSON_MEMBER])
        except ValueError:  # a corrupt json member: its fields are missing, so the row fails
            return None
        if isinstance(fields, dict):
            return fields.get(name)
    return None


def _member_value(suffix: str, data: bytes) -> Any:
    if suffix.rsplit(".", 1)[-1].lower() in TEXT_MEMBERS:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return data


def _check_webdataset_columns(spec: JobSpec, location: Location, path: str, columns: list[str]) -> list[tuple[str, dict[str, bytes]]]:
    """Every column the tasks and keep_columns name resolves in some of the first samples of
    the first shard; the SpecError lists what the samples hold. Returns those samples."""
    try:
        samples = _peek_samples(location, path, WEBDATASET_PEEK)
    except tarfile.TarError as e:
        raise SpecError(f"input: {path} is not a readable tar archive: {e}") from None
    if not samples:
        raise SpecError(f"input: {path} holds no WebDataset samples (members named <key>.<ext>)")
    wanted = {
        **{f"tasks[{t.column_prefix}].columns.{role}": col for t in spec.tasks for role, col in t.role_columns().items()},
        **{"keep_columns": c for c in spec.keep_columns},
    }
    for where, col in wanted.items():
        if not any(webdataset_value(members, col) is not None for _, members in samples):
            suffixes = sorted({s for _, members in samples for s in members})
            fields = sorted({f for _, m in samples for f in (_json_fields(m) or ())})
            raise SpecError(
                f"{where}: no member or json field {col!r} in the first {len(samples)} samples of {path}; "
                f"members are {suffixes}" + (f", json fields {fields}" if fields else "")
                + ("; map roles with --column ROLE=NAME" if "columns" in where else "")
            )
    return samples


def _json_fields(members: dict[str, bytes]) -> list[str] | None:
    try:
        fields = json.loads(members[JSON_MEMBER]) if JSON_MEMBER in members else None
    except ValueError:
        return None
    return list(fields) if isinstance(fields, dict) else None


class WebDatasetRows:
    """`read_webdataset`'s decoder: one sample (`__key__`, `__url__`, suffix -> bytes) becomes a
    row of the plan's columns (`webdataset_value`) plus its id `<shard>#<key>`.

    Under a limit that ends inside a shard it also counts that shard's samples and flags the
    ones past the limit (BEYOND_LIMIT). A decoder cannot drop a sample, and each shard is read
    whole, in order, by one read task, so the count is the sample's index in its shard.
    """

    def __init__(self, plan: SourcePlan):
        self._roots = plan.roots
        self._columns = plan.columns
        self._id_column = plan.id_column
        self._caps = dict(plan.row_caps)
        self._seen: dict[str, int] = {}

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        url = sample["__url__"]
        members = {k: v for k, v in sample.items() if not k.startswith("__")}
        row = {self._id_column: f"{_media_id(self._roots.get(url, ''), url)}#{sample['__key__']}"}
        for column in self._columns:
            row[column] = webdataset_value(members, column)
        if self._caps:
            index = self._seen.get(url, 0)
            self._seen[url] = index + 1
            row[BEYOND_LIMIT] = url in self._caps and index >= self._caps[url]
        return row


def _drop_beyond_limit(table: "pyarrow.Table") -> "pyarrow.Table":
    import pyarrow.compute as pc

    return table.filter(pc.invert(table.column(BEYOND_LIMIT))).drop_columns([BEYOND_LIMIT])
