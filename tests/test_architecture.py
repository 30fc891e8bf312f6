"""The house rules of ARCHITECTURE.md, checked: the layer contracts (import-linter,
configured in pyproject.toml), no import cycles, no module over 600 lines, and at most
five private names reached across modules."""

import ast
from pathlib import Path

import pytest

import emseg

PACKAGE = Path(emseg.__file__).parent
MAX_LINES = 600
MAX_PRIVATE_IMPORTS = 5


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources():
    return sorted(PACKAGE.rglob("*.py"))


def imports(path):
    """(imported module, name or None, line) for every import in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                yield target, alias.name, node.lineno


def is_module(dotted):
    rel = dotted.split(".")[1:]
    return (PACKAGE.joinpath(*rel).with_suffix(".py")).exists() or (
        PACKAGE.joinpath(*rel, "__init__.py").exists()
    )


def private_reach(path):
    """Private names this module takes from another: ``from x import _name`` (not a
    private submodule of the importer's own package), or any name from a private
    module of another package (``_shared`` is the package meant for sharing)."""
    own = module_name(path)
    own_package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for target, name, line in imports(path):
        if not target or not target.startswith("emseg"):
            continue
        full = f"{target}.{name}" if name else target
        if name and is_module(full):
            target, name = full, None
        if name and name.startswith("_") and not name.startswith("__") and target != own:
            yield f"{own}:{line} imports {target}.{name}"
            continue
        mod_package = target.rpartition(".")[0]
        leaf = target.rpartition(".")[2]
        if leaf.startswith("_") and leaf != "_shared" and mod_package != own_package:
            if not mod_package.startswith("emseg._shared"):
                yield f"{own}:{line} imports private module {target}"


def test_no_module_over_600_lines():
    long = {
        module_name(p): n
        for p in sources()
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_few_private_names_cross_modules():
    reach = [r for p in sources() for r in private_reach(p)]
    assert len(reach) <= MAX_PRIVATE_IMPORTS, "\n".join(reach)


def test_no_import_cycles():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("emseg")
    modules = sorted(m for m in graph.modules if m.startswith("emseg."))
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & set(modules)) for m in modules}
    # Tarjan's strongly connected components, iteratively
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(root):
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter[0]
                counter[0] += 1
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])

    for m in modules:
        if m not in index:
            visit(m)
    assert not cycles, f"import cycles: {cycles}"


def test_layer_contracts_hold():
    pytest.importorskip("importlinter")
    from importlinter.cli import lint_imports

    root = PACKAGE.parent
    assert (root / "pyproject.toml").exists()
    assert lint_imports(config_filename=str(root / "pyproject.toml")) == 0
