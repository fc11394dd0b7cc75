"""A real S3 endpoint on 127.0.0.1 for tests: moto's server in a subprocess, plus an optional
TCP proxy in front of it that can drop connections or answer 5xx for a bounded time.

Generic on purpose (offline jobs, serve, anything that speaks S3):

    with s3_endpoint(bucket="taskray-test") as s3:      # sets the AWS_* variables
        s3.uri("in/part-0.parquet")                     # "s3://taskray-test/in/part-0.parquet"
        ray.init(address="local")                       # a local Ray's workers inherit them
        with s3.proxy.outage(seconds=5, mode="http503"):  # only with proxied=True
            ...

moto runs in its own process rather than as `ThreadedMotoServer` in the test process: its
request handling then never competes with the test driver for the GIL, and an in-process
`mock_aws` elsewhere in the suite cannot reset its state.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Iterator, Literal

# Dummy credentials: moto accepts any, and real ones must never reach a test endpoint.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would point the SDKs somewhere else than the test endpoint.
_SHADOWING_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3")

FaultMode = Literal["reset", "http503", "http500"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no HTTP answer from {url} within {timeout_s}s") from None
            time.sleep(0.1)


class MotoServer:
    """`python -m moto.server` on 127.0.0.1 and a free port, stopped for sure on exit."""

    # The start-up bound catches a server that never answers: from the no-Ray test worker it
    # starts under SCHED_IDLE (tests/conftest.py), when the Ray tests leave a core.
    def __init__(self, start_timeout_s: float = 120.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("MotoServer is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoServer":
        # free_port() can race with another process grabbing the port; retry a few times.
        last: Exception | None = None
        for _ in range(3):
            self.port = free_port()
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                _wait_http(self.url + "/moto-api/", self.start_timeout_s, self._proc)
                return self
            except (RuntimeError, TimeoutError) as e:
                last = e
                self.stop()
        raise RuntimeError(f"could not start moto server: {last}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of an upstream port, which can fail on demand.

    Modes while a fault is on:
    - "reset": open connections are cut and new ones are closed at once (endpoint unreachable);
    - "http503" / "http500": each new request gets an S3-style error answer and the connection
      is closed (503 is what S3 sends as SlowDown; 500 is InternalError).
    Faults are always bounded in time: `outage(seconds)` heals on exit, and `fail_for`
    heals from a timer even when the caller forgets.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._mode: FaultMode | None = None
        self._conns: set[socket.socket] = set()
        self._closed = False
        self._heal_timer: threading.Timer | None = None
        self.refused = 0  # connections or requests failed on purpose, for the tests to check
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def faulty(self) -> bool:
        return self._mode is not None

    def fail(self, mode: FaultMode = "reset") -> None:
        if mode not in ("reset", "http503", "http500"):
            raise ValueError(f"mode must be 'reset', 'http503' or 'http500', got {mode!r}")
        with self._lock:
            self._mode = mode
            conns, self._conns = self._conns, set()
        for c in conns:  # in-flight requests must see the outage too, not only new ones
            _close(c, reset=True)

    def heal(self) -> None:
        with self._lock:
            self._mode = None
            timer, self._heal_timer = self._heal_timer, None
        if timer is not None:
            timer.cancel()

    def fail_for(self, seconds: float, mode: FaultMode = "reset") -> None:
        """Fail now and heal by itself after `seconds` (non-blocking)."""
        if not 0 < seconds <= 120:
            raise ValueError(f"seconds must be in (0, 120], got {seconds!r}")
        self.fail(mode)
        timer = threading.Timer(seconds, self.heal)
        timer.daemon = True
        with self._lock:
            self._heal_timer = timer
        timer.start()

    @contextlib.contextmanager
    def outage(self, seconds: float | None = None, mode: FaultMode = "reset") -> Iterator[None]:
        """Fail inside the block (or for `seconds`, whichever ends first) and heal on exit."""
        if seconds is None:
            self.fail(mode)
        else:
            self.fail_for(seconds, mode)
        try:
            yield
        finally:
            self.heal()

    def close(self) -> None:
        self.heal()
        with self._lock:
            self._closed = True
            conns, self._conns = self._conns, set()
        # close() alone does not wake a thread blocked in accept() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        _close(self._listener)
        for c in conns:
            _close(c)
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            mode = self._mode
            if mode is not None:
                self.refused += 1
                threading.Thread(target=self._refuse, args=(client, mode), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client, reset=True)
                continue
            with self._lock:
                if self._closed:
                    _close(client)
                    _close(upstream)
                    return
                self._conns.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass  # either side went away (or a fault cut it); closing both is all there is to do
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close(src)
            _close(dst)

    def _refuse(self, client: socket.socket, mode: FaultMode) -> None:
        if mode == "reset":
            _close(client, reset=True)
            return
        status, code = (503, "SlowDown") if mode == "http503" else (500, "InternalError")
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
            f"<Message>injected fault</Message></Error>"
        ).encode()
        try:
            client.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data and len(data) < 65536:
                chunk = client.recv(65536)
                if not chunk:
                    break
                data += chunk
            reason = "Slow Down" if status == 503 else "Internal Server Error"
            head = (
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            client.sendall(head + body)
        except OSError:
            pass  # the client gave up first; the fault happened either way
        finally:
            _close(client)


def _close(sock: socket.socket, reset: bool = False) -> None:
    try:
        if reset:
            # SO_LINGER 0 sends RST: the client sees "connection reset", as with a dead endpoint.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass


@dataclass
class S3Endpoint:
    """What a test needs to talk to the endpoint: URL, bucket, environment and clients."""

    endpoint_url: str
    bucket: str
    proxy: FaultProxy | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The same bucket reached without the proxy, for checks that must not see injected faults.
    direct: "S3Endpoint | None" = None

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    def s3fs(self):
        import s3fs

        # No listing cache: tests list prefixes that jobs keep writing to.
        return s3fs.S3FileSystem(
            key=self.env["AWS_ACCESS_KEY_ID"],
            secret=self.env["AWS_SECRET_ACCESS_KEY"],
            endpoint_url=self.endpoint_url,
            use_listings_cache=False,
            skip_instance_cache=True,
        )

    def pyarrow_fs(self, **kwargs):
        """pyarrow's S3 filesystem on this endpoint; kwargs go to `pyarrow.fs.S3FileSystem`
        (e.g. `retry_strategy=AwsStandardS3RetryStrategy(max_attempts=1)` to fail fast)."""
        import pyarrow.fs

        return pyarrow.fs.S3FileSystem(
            access_key=self.env["AWS_ACCESS_KEY_ID"],
            secret_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region=self.env["AWS_DEFAULT_REGION"],
            endpoint_override=self.endpoint_url,
            **kwargs,
        )

    def check_fs(self):
        """A pyarrow filesystem that reaches moto around the proxy: for a test's own reads and
        checks, which must neither trip over an injected fault nor count as refused traffic."""
        return (self.direct or self).pyarrow_fs()

    def list_keys(self, prefix: str = "") -> list[str]:
        """Object keys under `prefix` (relative to the bucket), sorted. Talks to moto directly
        when a proxy is in front, so a check never trips over an injected fault."""
        fs = (self.direct or self).s3fs()
        return sorted(p.split("/", 1)[1] for p in fs.find(f"{self.bucket}/{prefix.lstrip('/')}"))


@contextlib.contextmanager
def s3_endpoint(bucket: str = "taskray-test", *, proxied: bool = False) -> Iterator[S3Endpoint]:
    """Start moto (and a fault proxy when `proxied`), create `bucket`, set the AWS variables in
    os.environ for the block, and undo all of it on exit."""
    if len(bucket) < 3:
        raise ValueError(f"S3 bucket names need at least 3 characters, got {bucket!r}")
    names = (*TEST_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED", *_SHADOWING_VARS)
    saved = {k: os.environ.get(k) for k in names}
    with MotoServer() as moto:
        proxy = FaultProxy(moto.port) if proxied else None
        try:
            url = proxy.url if proxy else moto.url
            env = {**TEST_CREDENTIALS, "AWS_ENDPOINT_URL": url, "AWS_EC2_METADATA_DISABLED": "true"}
            for k in _SHADOWING_VARS:
                os.environ.pop(k, None)
            os.environ.update(env)
            direct = S3Endpoint(endpoint_url=moto.url, bucket=bucket, env=env)
            direct.s3fs().mkdir(bucket)
            yield S3Endpoint(endpoint_url=url, bucket=bucket, proxy=proxy, env=env, direct=direct if proxy else None)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            if proxy is not None:
                proxy.close()
