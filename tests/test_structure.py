"""The package's shape: no import circle, nothing imports ``bin/`` (thin mains only), and every
method is reachable only through the registry by the driver, export, report and config check."""

import ast
from pathlib import Path

from espnet_lalora.methods import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "espnet_lalora"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known) -> set:
    """The package modules that ``path`` imports, at any depth of the file (lazy imports count).
    ``from a.b import c`` is an import of ``a.b.c`` when that is a module, else of ``a.b``."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in known else node.module)
    return {m for m in out if m in known}


def import_graph():
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: imports_of(p, files) for m, p in files.items()}


def find_cycle(graph):
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path + [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [node])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_the_import_graph_has_no_circle_and_nothing_imports_bin():
    graph = import_graph()
    assert len(graph) > 30 and "espnet_lalora.methods.la_lora" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    importers = {m: sorted(d for d in deps if d.startswith("espnet_lalora.bin"))
                 for m, deps in graph.items()}
    assert {m: d for m, d in importers.items() if d} == {}


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_tool_outside_the_methods_names_a_method():
    """The driver, export, parameter report and config check ask the registry."""
    users = [ROOT / "local/asr.sh", PACKAGE / "export.py", PACKAGE / "params.py",
             PACKAGE / "bin/param_report.py", PACKAGE / "bin/check_config.py",
             PACKAGE / "bin/prepare_method.py", PACKAGE / "espnet_plugin.py"]
    for path in users:
        code = "\n".join(line for line in path.read_text().splitlines()
                         if not line.lstrip().startswith("#"))
        for name in REGISTRY:
            for quoted in (f'"{name}"', f"'{name}'", f"= {name}", f"== {name}"):
                assert quoted not in code, f"{path.name} names the method {name}"
