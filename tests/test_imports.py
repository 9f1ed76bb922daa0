"""The library's module graph: no module imports one that imports it back (directly or not), at any level: at
its top, inside a function, or for type checking only (`if TYPE_CHECKING:`)."""
import ast
from pathlib import Path

import genie_utils

PACKAGE = Path(genie_utils.__file__).parent


def package_imports(path: Path, package: str) -> set[str]:
    """The package's modules that `path` imports (relative imports), wherever the import statement stands."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            if node.module:
                found.add(f"{base}.{node.module}")
            else:
                found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = ".".join(parts[:-1])
        graph[name] = package_imports(path, package)
    modules = set(graph)
    return {name: {m for m in targets if m in modules} for name, targets in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for child in sorted(graph.get(node, ())):
            if state.get(child) == "open":
                found.append(stack[stack.index(child):] + [child])
            elif child not in state:
                visit(child, stack + [child])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_module_graph_has_no_cycle():
    graph = module_graph()
    assert "genie_utils.pairing" in graph["genie_utils.ada"]  # ada takes its episodes from pairing ...
    assert "genie_utils.fewshot" not in graph["genie_utils.ada"]  # ... not from the few-shot experiment
    assert cycles(graph) == []


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def test_the_figures_and_the_job_runner_do_not_import_the_generator():
    graph = module_graph()
    assert "genie_utils.generate" not in graph["genie_utils.jobs"]  # jobs.ImageGenerator says what it needs
    assert {"genie_utils.ada", "genie_utils.generate"}.isdisjoint(reachable(graph, "genie_utils.plots"))


def test_a_cycle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_imports_are_seen_at_every_level(tmp_path):
    path = tmp_path / "module.py"
    path.write_text("from typing import TYPE_CHECKING\n\nfrom .top import x\n\nif TYPE_CHECKING:\n"
                    "    from .typing_only import Y\n\n\ndef f():\n    from . import inner\n    from ..up import z\n")
    assert package_imports(path, "pkg.sub") == {"pkg.sub.top", "pkg.sub.typing_only", "pkg.sub.inner", "pkg.up"}


def test_a_cycle_through_a_type_checking_import_is_found(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text("from .b import run\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from .a import A\n")
    graph = {f"pkg.{name}": package_imports(package / f"{name}.py", "pkg") for name in ("a", "b")}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]


def imports_inside_functions(path: Path) -> list[str]:
    """The package modules `path` imports inside a function or method (relative imports), as source lines."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [f"{path.name}:{inner.lineno}" for inner in ast.walk(node)
                      if isinstance(inner, ast.ImportFrom) and inner.level]
    return found


def test_no_module_imports_the_package_inside_a_function():
    """Except the command line, which imports the heavy modules inside its commands (its docstring says so), a
    project import inside a function would only hide a cycle."""
    hidden = [line for path in sorted(PACKAGE.rglob("*.py")) if path.name != "cli.py"
              for line in imports_inside_functions(path)]
    assert hidden == []
    assert imports_inside_functions(PACKAGE / "cli.py")  # the rule sees them where they are
