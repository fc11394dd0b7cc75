"""A real local Ray head (`ray start --head`, dashboard and Jobs API included) that a test owns.

Other Ray instances may run on the same machine, so this head gets its own temp dir and free
ports, and stopping it kills exactly its processes (those naming its temp dir or its GCS port,
with their children) instead of calling `ray stop`, which would stop every Ray on the machine.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import psutil

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayHead:
    def __init__(self, num_cpus: int = 2, start_timeout_s: float = 180.0):
        self.num_cpus = num_cpus
        self.start_timeout_s = start_timeout_s
        # Short: Ray's unix socket paths under it must stay below 108 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="trh", dir="/tmp")
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        # PATH: the job's entrypoint (`python -m pipelines.cli`) must find this interpreter.
        # A token of our own makes the head use token auth (as Ray 2.60 does wherever a token
        # exists) deterministically, without touching ~/.ray.
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RAY_")},
            "PATH": BIN + os.pathsep + os.environ.get("PATH", ""),
            "RAY_AUTH_TOKEN": secrets.token_hex(16),
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    def start(self, attempts: int = 3) -> "LocalRayHead":
        """`ray start --head`, retried on fresh ports: on a loaded machine the raylet can miss
        Ray's fixed 30 s registration deadline ("Failed to get node info"), and a second try
        usually makes it."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except RuntimeError:
                if attempt == attempts:
                    raise
                self.gcs_port = free_port()
                self.dashboard_port = free_port()
                self.address = f"http://127.0.0.1:{self.dashboard_port}"
        raise AssertionError("unreachable")

    def _start_once(self) -> "LocalRayHead":
        cmd = [
            os.path.join(BIN, "ray"), "start", "--head",
            f"--port={self.gcs_port}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.temp_dir}",
            # These default to fixed ports that another local Ray may already hold.
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--disable-usage-stats",
        ]  # fmt: skip
        try:
            proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=self.start_timeout_s)
        except subprocess.TimeoutExpired as e:
            self._kill_processes()
            raise RuntimeError(f"ray start did not return within {self.start_timeout_s:.0f}s") from e
        if proc.returncode != 0:
            self._kill_processes()
            tail = (proc.stdout + proc.stderr)[-3000:]
            raise RuntimeError(f"ray start failed ({proc.returncode}):\n{tail}")
        return self

    def _owned_processes(self) -> list[psutil.Process]:
        mine = []
        gcs_suffix = f":{self.gcs_port}"
        for proc in psutil.process_iter(["pid", "cmdline"]):
            args = proc.info.get("cmdline") or []
            if any(self.temp_dir in a or a.endswith(gcs_suffix) for a in args):
                mine.append(proc)
        found = {p.pid: p for p in mine}
        for proc in mine:
            try:
                for child in proc.children(recursive=True):
                    found.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                pass
        found.pop(os.getpid(), None)
        return list(found.values())

    def _kill_processes(self) -> None:
        procs = self._owned_processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        # A short grace: the head is thrown away, and whatever has not exited by then (Ray's
        # agents can take 10 s) is killed as `ray stop --force` would.
        _, alive = psutil.wait_procs(procs, timeout=2)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)

    def stop(self) -> None:
        self._kill_processes()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def taskray(self, *args: str, timeout_s: float) -> subprocess.CompletedProcess:
        """`taskray <args>` as a user runs it, with this head's token in the environment."""
        return subprocess.run(
            [os.path.join(BIN, "taskray"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def __enter__(self) -> "LocalRayHead":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout_s: float, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    return predicate()
