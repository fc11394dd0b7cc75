"""Start-up tracer for benchmarks/cold_start.py: put on PYTHONPATH of a `taskray` command, it is
imported by every Python process of the command (the driver and the Ray workers the raylet
starts inherit the environment). It appends one JSON line per event to $TASKRAY_TRACE: the
process start, the end of a few heavy imports, and the start and end of the steps the cold start
is made of. It changes no behaviour; without $TASKRAY_TRACE it does nothing.
"""

import os

if os.environ.get("TASKRAY_TRACE"):
    import functools
    import json
    import sys
    import threading
    import time

    _PATH = os.environ["TASKRAY_TRACE"]
    _LOCK = threading.Lock()

    def _event(name, start=None, **extra):
        end = time.time()
        record = {"pid": os.getpid(), "event": name, "t": end, **extra}
        if start is not None:
            record["start"] = start
        with _LOCK, open(_PATH, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _process_start():
        # The process's own start (fork/exec), before the interpreter's start-up.
        try:
            with open("/proc/self/stat") as f:
                ticks = int(f.read().rsplit(")", 1)[1].split()[19])
            with open("/proc/stat") as f:
                boot = next(int(line.split()[1]) for line in f if line.startswith("btime"))
            return boot + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, StopIteration):
            return None

    _event("process", start=_process_start(), argv=" ".join(sys.argv[:3])[:200])

    def _timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            start = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                _event(name, start=start)

        return wrapper

    def _patch_attr(owner, attr, name):
        fn = getattr(owner, attr, None)
        if fn is not None and not getattr(fn, "_traced", False):
            wrapped = _timed(name, fn)
            wrapped._traced = True
            setattr(owner, attr, wrapped)

    def _patch_first_call(owner, attr, name):
        """Times only the first call in each process."""
        fn = getattr(owner, attr, None)
        if fn is None or getattr(fn, "_traced", False):
            return
        done = []

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if done:
                return fn(*args, **kwargs)
            done.append(1)
            start = time.time()
            try:
                return fn(*args, **kwargs)
            finally:
                _event(name, start=start)

        wrapper._traced = True
        setattr(owner, attr, wrapper)

    # module -> [(dotted attribute, event name, first call only)]
    _PATCHES = {
        "pipelines.offline.preflight": [(n, f"preflight.{n}", False) for n in ("check_input", "check_operators", "check_output", "check_resources")],
        "pipelines.offline.job": [
            ("run_job", "run_job", False), ("_ensure_ray", "ray start", False),
            ("build_dataset", "build_dataset", False), ("finalize", "finalize", False),
        ],
        "pipelines.offline.plan": [("plan_job", "plan_job", False)],
        "operators.runtime": [("OperatorRunner._load", "weights", False)],
        "pipelines.offline.stages": [
            ("Forward.__init__", "Forward.__init__", False),
            ("Forward.__call__", "Forward call", False), ("Preprocess.__call__", "Preprocess call", False),
        ],
        "ray._private.node": [("Node.kill_all_processes", "Ray shut down (its processes stopped)", False)],
        "ray.data.dataset": [("Dataset.write_parquet", "write_parquet (execution)", False)],
        "ray.data._internal.datasource.parquet_datasink": [("ParquetDatasink.write", "write task", False)],
        "ray.data._internal.datasource.parquet_datasource": [("read_fragments", "read task", False)],
        "ray.data._internal.execution.streaming_executor": [("StreamingExecutor.execute", "executor.execute", False)],
    }
    def _patch_tasks(module):
        """Name the first Ray task or actor each worker is handed (which process does what)."""
        cls = module.FunctionActorManager
        get = cls.get_execution_info
        seen = set()

        @functools.wraps(get)
        def get_execution_info(self, job_id, descriptor):
            name = getattr(descriptor, "repr", None) or str(descriptor)
            if name not in seen:
                seen.add(name)
                _event("ray task " + name[:120])
            return get(self, job_id, descriptor)

        cls.get_execution_info = get_execution_info

    _PATCHES["ray._private.function_manager"] = []
    _IMPORTS = ("torch", "transformers", "ray", "ray.data", "pyarrow", "pipelines.offline.job", "pipelines.offline.stages", "operators", "pydantic")

    def _apply(name, module):
        if name == "ray._private.function_manager":
            _patch_tasks(module)
        for dotted, event, first in _PATCHES.get(name, ()):
            owner, _, attr = dotted.rpartition(".")
            target = functools.reduce(getattr, owner.split("."), module) if owner else module
            (_patch_first_call if first else _patch_attr)(target, attr, event)

    class _Finder:
        def find_spec(self, name, path=None, target=None):
            if name not in _PATCHES and name not in _IMPORTS:
                return None
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            loader = spec.loader
            if loader is None or not hasattr(loader, "exec_module"):
                return spec
            exec_module = loader.exec_module

            def traced_exec(module, _exec=exec_module, _name=name):
                start = time.time()
                _exec(module)
                if _name in _IMPORTS:
                    _event(f"import {_name}", start=start)
                _apply(_name, module)

            loader.exec_module = traced_exec
            return spec

    sys.meta_path.insert(0, _Finder())
    # The interpreter's exit: threading._shutdown joins the non-daemon threads before the atexit
    # handlers (Ray's shutdown among them) run.
    _patch_attr(threading, "_shutdown", "exit: non-daemon threads joined")
