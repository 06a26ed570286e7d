"""The shape of the code (DESIGN.md section 2): no import circle, at module level or through imports inside functions;
every import inside a function says why in one line (start-up time), and the light entry points stay light; no module
over 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = {
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
    for p in sorted((SRC / "mimic").rglob("*.py"))
}
MAX_LINES = 400


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported mimic module, line, inside a function) for every import in the module ``name``, TYPE_CHECKING
    blocks left out. ``from a import b`` imports ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, in_function) for a in child.names if a.name.startswith("mimic"))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + [base]).strip(".")
                if base.startswith("mimic"):
                    for a in child.names:
                        target = f"{base}.{a.name}"
                        found.append((target if target in MODULES else base, child.lineno, in_function))
            visit(child, inside)

    visit(tree, False)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """The import circles among mimic's modules (Tarjan's strongly connected components of more than one module, or
    a module importing itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _, _ in GRAPH.get(v, []):
            if w not in GRAPH:
                continue
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or any(w == v for w, _, _ in GRAPH[v]):
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in GRAPH:
        if v not in index:
            connect(v)
    return found


def test_no_import_circle_even_through_imports_inside_functions():
    assert _cycles() == []


def test_an_import_inside_a_function_says_why():
    """The only imports inside functions are kept for start-up time, each with a one-line reason beside it."""
    unexplained = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            imports = sorted(n.lineno for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))
            explained: set[int] = set()
            for line in imports:  # a comment on the line, or above it, or on the import just before it
                above = lines[line - 2].strip() if line > 1 else ""
                if "#" in lines[line - 1] or above.startswith("#") or line - 1 in explained:
                    explained.add(line)
                else:
                    unexplained.append(f"{path.relative_to(SRC)}:{line}: {lines[line - 1].strip()}")
    assert unexplained == [], "\n".join(unexplained)


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        ("import mimic", {"torch", "cv2", "lightning"}),
        ("import mimic.settings", {"torch", "cv2", "lightning", "hydra"}),
        ("import mimic.realtime.window", {"torch", "lightning"}),
        ("import mimic.models.predictor, mimic.models.checkpoint", {"lightning"}),
        ("import mimic.models.predictor, mimic.models.onnx_model", {"torch", "lightning"}),
        ("import mimic.data.folders, mimic.data.fer2013", {"torch", "lightning"}),
    ],
)
def test_light_entry_points_stay_light(code, absent):
    """What each start-up path must not load: the window and an ONNX model run without Lightning (and an ONNX model
    without torch); reading class folders and FER2013 without Lightning."""
    probe = f"{code}; import sys; print(sorted(set({sorted(absent)!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
