"""Filesystems for job URIs: local paths, s3:// through pyarrow, and any other fsspec URL.

S3 settings come from the job's StorageOptions first, then the standard AWS environment
(AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, AWS_REGION / AWS_DEFAULT_REGION, AWS_PROFILE, the
usual credential variables). Credentials are resolved here, on the driver, and travel inside
the pickled filesystem to Ray workers, so a worker does not need the driver's environment.
Nothing in this module logs or formats a credential.

Any other `<protocol>://` URL (gs://, az://, hf://, ...) goes through fsspec when the package
that implements the protocol is installed (gcsfs, adlfs, huggingface_hub), wrapped as a pyarrow
filesystem (`pyarrow.fs.PyFileSystem(FSSpecHandler(fs))`) so that the rest of the job, Ray
Data's readers, writer and checkpoint included, uses it like the other two. Its options come
from fsspec's own configuration (`FSSPEC_<PROTOCOL>_<OPTION>` variables, or
`~/.config/fsspec/*.json`) and each package's usual credential chain. An fsspec filesystem
pickles as its constructor arguments, so the options travel to Ray workers with it, and
credentials the package looks up itself (a GCP or Azure identity) are looked up on each node.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow.fs

    from pipelines.spec import StorageOptions

GLOB_CHARS = "*?["


@dataclass(frozen=True)
class Location:
    """A resolved URI: the filesystem and the path inside it (no scheme)."""

    filesystem: "pyarrow.fs.FileSystem"
    path: str
    uri: str
    prefix: str = ""  # what turns a path inside the filesystem back into a URI: "", "s3://", "gs://", ...

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")


def resolve(uri: str, options: "StorageOptions | None" = None) -> Location:
    """The filesystem and in-filesystem path of a local path, an s3:// URI or an fsspec URL.

    `options` applies to s3:// only. Raises ValueError for a protocol no installed package serves.
    """
    import pyarrow.fs as pafs

    if not isinstance(uri, str) or not uri:
        raise TypeError(f"uri must be a non-empty str, got {uri!r}")
    if uri.startswith("s3://"):
        return Location(s3_filesystem(options), uri[len("s3://"):].rstrip("/"), uri.rstrip("/"), "s3://")
    if ("://" in uri and not uri.startswith("file://")) or "::" in uri:
        return fsspec_location(uri)
    path = os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))
    return Location(pafs.LocalFileSystem(), path, path)


def fsspec_location(uri: str) -> Location:
    """An fsspec URL (chains such as `simplecache::gs://...` included) as a Location on a
    pyarrow wrapper of its fsspec filesystem."""
    import fsspec
    import pyarrow.fs as pafs

    protocol = uri.split("://", 1)[0]
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except ImportError as e:  # fsspec knows the protocol; its package is not installed
        raise ValueError(f"cannot open {protocol}:// URIs: {e}") from None
    except ValueError as e:  # "Protocol not known"
        raise ValueError(
            f"unsupported URI scheme {protocol!r} in {uri!r} ({e}); use a local path, s3://, or a URL of an "
            "fsspec filesystem whose package is installed (gs:// gcsfs, az:// adlfs, hf:// huggingface_hub)"
        ) from None
    path = path.rstrip("/") or path
    # The URI of a path inside is the URI's own prefix plus that path; a protocol that
    # rewrites paths (none of the common ones) falls back to fsspec's own spelling.
    base = uri.rstrip("/")
    if path and base.endswith(path):
        prefix = base[: -len(path)]
    else:
        full = fs.unstrip_protocol(path)
        prefix = full[: -len(path)] if path and full.endswith(path) else ""
    return Location(pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path, base, prefix)


def s3_filesystem(options: "StorageOptions | None" = None) -> "pyarrow.fs.S3FileSystem":
    import pyarrow.fs as pafs

    env = os.environ
    endpoint = (options and options.endpoint_url) or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = (options and options.region) or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    profile = (options and options.profile) or env.get("AWS_PROFILE")
    anonymous = bool(options and options.anonymous)
    kwargs: dict = {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        if not host:
            scheme, host = "https", endpoint
        kwargs["endpoint_override"] = host.rstrip("/")
        kwargs["scheme"] = scheme
    if region:
        kwargs["region"] = region
    if anonymous:
        kwargs["anonymous"] = True
    else:
        kwargs.update(_credentials(profile))
    # Retry transient failures (throttling, a flapping endpoint) inside pyarrow as well.
    kwargs["retry_strategy"] = pafs.AwsStandardS3RetryStrategy(max_attempts=5)
    return pafs.S3FileSystem(**kwargs)


def lance_storage_options(location: Location, options: "StorageOptions | None" = None) -> dict[str, str] | None:
    """The same S3 settings as s3_filesystem, spelled as lance's object store takes them
    (`aws_endpoint`, `aws_region`, keys, `allow_http` for an http:// endpoint); None for a local path."""
    if not location.is_s3:
        return None
    env = os.environ
    endpoint = (options and options.endpoint_url) or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    region = (options and options.region) or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    out: dict[str, str] = {}
    if endpoint:
        out["aws_endpoint"] = endpoint if "://" in endpoint else f"https://{endpoint}"
        if out["aws_endpoint"].startswith("http://"):
            out["allow_http"] = "true"
    if region:
        out["aws_region"] = region
    if options and options.anonymous:
        out["aws_skip_signature"] = "true"
        return out
    keys = _credentials((options and options.profile) or env.get("AWS_PROFILE"))
    for ours, theirs in (("access_key", "aws_access_key_id"), ("secret_key", "aws_secret_access_key"), ("session_token", "aws_session_token")):
        if ours in keys:
            out[theirs] = keys[ours]
    return out


def _credentials(profile: str | None) -> dict:
    """Explicit keys (from the profile or the environment) so that they travel with the
    filesystem to workers. Empty when none are set: pyarrow then uses its default chain."""
    env = os.environ
    if profile:
        import botocore.session

        creds = botocore.session.Session(profile=profile).get_credentials()
        if creds is None:
            raise ValueError(f"AWS profile {profile!r} has no credentials")
        frozen = creds.get_frozen_credentials()
        keys = {"access_key": frozen.access_key, "secret_key": frozen.secret_key}
        if frozen.token:
            keys["session_token"] = frozen.token
        return keys
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        keys = {"access_key": env["AWS_ACCESS_KEY_ID"], "secret_key": env["AWS_SECRET_ACCESS_KEY"]}
        if env.get("AWS_SESSION_TOKEN"):
            keys["session_token"] = env["AWS_SESSION_TOKEN"]
        return keys
    return {}


def join(location: Location, *parts: str) -> str:
    return posixpath.join(location.path, *parts)


def uri_of(location: Location, path: str) -> str:
    """The URI of `path` (a path inside `location`'s filesystem), as `resolve` takes it."""
    return location.prefix + path


def is_hidden(name: str) -> bool:
    """Names Ray Data and pyarrow skip when listing a dataset: _SUCCESS, _checkpoint, .tmp."""
    return name.startswith(("_", "."))


def list_files(uri: str, options: "StorageOptions | None" = None, extensions: tuple[str, ...] | None = None) -> tuple[Location, list[str], str]:
    """Expand a directory, glob or single file into a sorted list of file paths.

    Returns (location, files, root): `root` is the directory the files are relative to, used
    to derive stable ids that do not depend on where the dataset is mounted.
    """
    import pyarrow.fs as pafs

    loc = resolve(uri, options)
    fs = loc.filesystem
    path = loc.path
    if any(c in path for c in GLOB_CHARS):
        cut = min(path.index(c) for c in GLOB_CHARS if c in path)
        root = path[:cut].rsplit("/", 1)[0] if "/" in path[:cut] else ""
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        files = [i.path for i in infos if i.type == pafs.FileType.File and fnmatch.fnmatch(i.path, path)]
    else:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"input {uri!r} does not exist")
        if info.type == pafs.FileType.File:
            return loc, [path], posixpath.dirname(path)
        root = path
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        files = [i.path for i in infos if i.type == pafs.FileType.File]
    files = [f for f in files if not any(is_hidden(part) for part in posixpath.relpath(f, root or "/").split("/"))]
    if extensions is not None:
        files = [f for f in files if f.lower().endswith(extensions)]
    return loc, sorted(files), root


def output_state(location: Location) -> list[str]:
    """The names directly under an output directory (empty when it does not exist)."""
    import pyarrow.fs as pafs

    info = location.filesystem.get_file_info(location.path)
    if info.type == pafs.FileType.NotFound:
        return []
    if info.type == pafs.FileType.File:
        raise ValueError(f"output {location.uri!r} is a file, expected a directory")
    infos = location.filesystem.get_file_info(pafs.FileSelector(location.path, recursive=False))
    return sorted(posixpath.basename(i.path) for i in infos)


def delete_dir_contents(location: Location) -> None:
    import pyarrow.fs as pafs

    info = location.filesystem.get_file_info(location.path)
    if info.type == pafs.FileType.Directory:
        location.filesystem.delete_dir_contents(location.path, missing_dir_ok=True)


def write_text(location: Location, path: str, text: str) -> None:
    """Write a small file via a temporary name and a move, so readers never see half of it
    (on S3 the PUT itself is atomic and the move is a copy)."""
    tmp = posixpath.join(posixpath.dirname(path), f".{posixpath.basename(path)}.tmp")
    location.filesystem.create_dir(posixpath.dirname(path), recursive=True)
    with location.filesystem.open_output_stream(tmp) as f:
        f.write(text.encode("utf-8"))
    location.filesystem.move(tmp, path)


def read_text(location: Location, path: str) -> str | None:
    import pyarrow.fs as pafs

    if location.filesystem.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with location.filesystem.open_input_stream(path) as f:
        return f.read().decode("utf-8")
