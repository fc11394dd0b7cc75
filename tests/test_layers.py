"""The import graph of the project's own modules (every import, module level or inside a
function, read from the source): no circles, no arrow from a lower layer to a higher one, no
arrow between two paths, and no private name imported from another module.

Layers, low to high:
- operators: task operators; never Ray, never pipelines.
- tiny_models: offline model builders (the demo's, the tests'); operators at most.
- pipelines core: what every path shares (spec, storage, sources, sizing, the output's files and
  manifest, preflight).
- the paths: offline (pipelines/offline: plan, stages, job, retry, label), serve, report, export,
  submit, demo; each imports the layers below, never another path.
- the CLI: pipelines.cli, pipelines.commands, and the package's own __init__.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("operators", "tiny_models", "pipelines")

# path -> its modules (a name covers the module and, for a package, its submodules)
PATHS = {
    "offline": ("pipelines.offline",),
    "serve": ("pipelines.serve",),
    "report": ("pipelines.report",),
    "export": ("pipelines.export",),
    "submit": ("pipelines.submit",),
    "demo": ("pipelines.demo",),
}
CLI = ("pipelines.cli", "pipelines.commands")


def _modules() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    found[module.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _own(name: str) -> str | None:
    """The project module that `name` (a module or a module.attribute) lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> Iterator[tuple[str, str | None]]:
    """(imported project module, imported name or None) for every import in `module`."""
    path = MODULES[module]
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if (target := _own(alias.name)) is not None:
                    yield target, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if path.endswith("__init__.py") else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            for alias in node.names:
                target = _own(f"{base}.{alias.name}")
                if target is not None:
                    yield target, None if target == f"{base}.{alias.name}" else alias.name


GRAPH = {m: {t for t, _ in _imports(m) if t != m} for m in MODULES}


def _in(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


def layer(module: str) -> int:
    if module.startswith("operators"):
        return 0
    if module.startswith("tiny_models"):
        return 1
    if module == "pipelines" or _in(module, CLI):
        return 4
    if any(_in(module, names) for names in PATHS.values()):
        return 3
    return 2


def path_of(module: str) -> str | None:
    return next((p for p, names in PATHS.items() if _in(module, names)), None)


def test_the_graph_is_read():
    assert {"operators.base", "pipelines.offline.job", "pipelines.serve.app", "tiny_models"} <= set(MODULES)
    assert "operators.base" in GRAPH["operators.tasks.question_answering"]
    assert "pipelines.spec" in GRAPH["pipelines.offline.job"]  # imports inside functions count too


def test_no_import_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_imports_go_down_the_layers_and_never_between_paths():
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            if layer(target) > layer(module):
                wrong.append(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
            elif layer(module) == layer(target) == 3 and path_of(module) != path_of(target):
                wrong.append(f"{module} ({path_of(module)}) imports {target} ({path_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_operators_never_import_ray():
    for module, path in MODULES.items():
        if module.startswith("operators"):
            tree = ast.parse(open(path).read(), path)
            names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
            names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
            assert not [n for n in names if n == "ray" or n.startswith("ray.")], module


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{module} imports {name} from {target}"
        for module in MODULES
        for target, name in _imports(module)
        if name is not None and name.startswith("_") and not name.startswith("__") and target != module
    ]
    assert not private, "\n".join(private)


def test_no_module_outside_the_operators_assigns_an_operator_method():
    """Nothing wraps or replaces an operator's methods from outside it (the thread share used to
    be patched over forward_batch): behaviour goes through the operator's own hooks."""
    import inspect

    from operators.base import Operator

    methods = {name for name, _ in inspect.getmembers(Operator, callable) if not name.startswith("__")}
    holds_an_operator = re.compile(r"(^|\.)_?op(erator)?$")  # op, self._op, self.op, runner.op, operator
    patched = []
    for module, path in MODULES.items():
        if module.startswith("operators"):
            continue
        for node in ast.walk(ast.parse(open(path).read(), path)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for target in targets:
                if (isinstance(target, ast.Attribute) and target.attr in methods
                        and holds_an_operator.search(ast.unparse(target.value))):
                    patched.append(f"{module}:{node.lineno} assigns .{target.attr}")
    assert not patched, "\n".join(patched)
