"""Every longlab module imports on its own in a fresh interpreter (no other longlab module loaded before it),
and no import cycle exists among longlab modules, counting imports placed inside functions too (a cycle that
works only because one side imports lazily is still a cycle).

The graph: module A -> module B for every `import` / `from ... import` in A's source (anywhere in the file) that
names a longlab module B; `from pkg import name` points at pkg.name when that is a module, else at pkg. Importing
B also runs the __init__ of each package above B that A is not already inside, so A -> those packages too.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "longlab"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_package = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str) -> set[str]:
    """longlab modules that `name` imports, anywhere in its source, plus the packages that importing them runs."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, node)
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    edges = set()
    for target in targets:
        while target and target not in MODULES:  # `import longlab.x.y as z` style names: nearest module
            target = target.rpartition(".")[0]
        if not target.startswith("longlab"):
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # the target and the package __init__s its import runs
            step = ".".join(parts[:i])
            if step not in own_packages and step != name:
                edges.add(step)
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_among_longlab_modules():
    graph = {name: imports_of(name) for name in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_sees_function_level_imports():
    graph = {"a": {"b"}, "b": set()}
    assert find_cycle(graph) is None
    graph["b"].add("a")
    assert find_cycle(graph) == ["a", "b", "a"]
    # store.py once imported persist inside a function while persist imported store: counted as a cycle
    src = "def f():\n    from .store import KVMemory\n"
    assert any(isinstance(n, ast.ImportFrom) and n.module == "store" for n in ast.walk(ast.parse(src)))


def test_memory_store_faiss_persist_import_one_way():
    assert "longlab.memory.store" not in imports_of("longlab.memory.faiss_backend")
    assert "longlab.memory.store" not in imports_of("longlab.memory.persist")
    assert {"longlab.memory.faiss_backend", "longlab.memory.persist"} <= imports_of("longlab.memory.store")


OPTIONAL = {"faiss", "playwright", "triton"}  # a module may need an optional extra; then it must say which

# One child interpreter preloads the heavy third-party libraries (no longlab module), then forks once per longlab
# module: each fork starts with no longlab module loaded, so every module is imported as if first (an import
# that works only after another longlab module was loaded fails here). Fork keeps this to seconds, not minutes.
_CHILD = """
import json, os, sys, traceback
import numpy, torch  # third-party only: nothing from longlab is loaded before the forks
assert not any(m == "longlab" or m.startswith("longlab.") for m in sys.modules)
results = {}
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__(name)
            message = ""
        except BaseException:
            message = traceback.format_exc()[-2000:] or "failed"
        os.write(write, message.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        results[name] = pipe.read()
    os.waitpid(pid, 0)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def fresh_imports() -> dict:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork (Linux / macOS)")
    result = subprocess.run([sys.executable, "-c", _CHILD, *sorted(MODULES)], cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_imports_in_a_fresh_interpreter(name, fresh_imports):
    error = fresh_imports[name]
    if error and any(f"No module named '{m}" in error for m in OPTIONAL):
        pytest.skip(f"{name} needs an optional extra: {error.strip().splitlines()[-1]}")
    assert not error, f"import {name} failed in a fresh interpreter:\n{error}"
