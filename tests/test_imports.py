"""The import graph of ``litemono/`` has no cycle: every ``import`` statement counts, at module
level or inside a function (a lazy import hides a cycle; it does not remove it)."""
import ast

from conftest import ROOT

PACKAGE = ROOT / "litemono"


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(node, importer, is_package):
    """The litemono modules one import statement of ``importer`` names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = importer if is_package else importer.rsplit(".", 1)[0]
    for _ in range(node.level - 1):
        base = base.rsplit(".", 1)[0]
    target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
    # `from a import b` names the module a.b when there is one, else a's attribute b
    return [f"{target}.{alias.name}" for alias in node.names] + [target]


def import_graph():
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found = resolve(node, name, path.name == "__init__.py")
                # `from a import b`: the submodule a.b if it exists, else the module a
                submodules = [t for t in found[:-1] if t in modules]
                edges.update(submodules or [t for t in found if t in modules])
        graph[name] = edges - {name}
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_module_level_and_function_level_imports():
    graph = import_graph()
    assert "litemono.errors" in graph["litemono.config"]  # module level
    assert "litemono.models.build" in graph["litemono"]  # inside a function (lazy)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_litemono_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)
