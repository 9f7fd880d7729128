"""The package's layers: imports run one way (CLI -> audit -> pipeline -> task model and
outputs -> privacy and models -> shared leaves -> kernels); inside the pipeline, the runner ->
methods -> stages -> run infrastructure; there are no import cycles (in the library or in
experiments/), no library module is over 400 lines, no function over 80 (see
`test_no_long_functions_in_the_library`), the formatter formats every line, no import hides
behind a one-letter alias, and the installed project claims no top-level name but its own."""

import ast
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

#: Rank of each part of the package: a module may import a lower rank, or its own part.
RANKS = {
    "cli": 7,
    "audit": 6,
    "pipeline": 5,
    "stm": 4,
    "tune": 4,
    "outputs": 4,
    "privacy": 3,
    "models": 3,
    "errors": 2,
    "config": 2,
    "tasks": 2,
    "task_schema": 2,
    "records": 2,
    "data": 2,
    "budget": 2,
    "class_checks": 2,
    "distributed": 2,
    "kernels": 1,
}
#: Public entry points for users (short import paths); nothing in the library imports them.
FACADES = {"wasp_jax", "wasp_jax.plm", "wasp_jax.embed"}
#: Within the leaves, what each may import (the leaves are otherwise independent).
LEAF_DEPS = {
    "config": {"errors"},
    "data": {"errors", "records"},
    "records": {"errors"},
    "tasks": {"errors", "task_schema"},
    "task_schema": {"errors"},
    "class_checks": {"errors"},
    "distributed": {"errors"},
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in sorted((REPO / "wasp_jax").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(p for p in parts if p != "__init__")] = path
    for path in sorted((REPO / "kernels").rglob("*.py")):
        parts = ("wasp_jax",) + path.relative_to(REPO).with_suffix("").parts
        out[".".join(p for p in parts if p != "__init__")] = path
    return out


MODULES = _modules()


def _imports(path: pathlib.Path, name: str, known=None, prefix: str = "wasp_jax") -> set[str]:
    """Every module of `known` (default: the library's) under `prefix` that `path` imports,
    at the top or inside a function."""
    known = MODULES if known is None else known
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".")[: -node.level + (path.name == "__init__.py")]
                base = ".".join([*pkg, base] if base else pkg)
            # `from pkg import mod` imports pkg.mod; `from pkg import name` imports pkg
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n.startswith(prefix) and n != name:
                found.add(n)
    return found


GRAPH = {name: _imports(path, name) for name, path in MODULES.items()}


def _part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_imports_run_one_way():
    bad = []
    for src, targets in GRAPH.items():
        if src in FACADES:
            continue
        for dst in targets:
            a, b = _part(src), _part(dst)
            if dst in FACADES:
                bad.append(f"{src} imports the public facade {dst}")
            elif a == b:
                continue
            elif RANKS[a] == RANKS[b] == 2 and b in LEAF_DEPS.get(a, set()):
                continue
            elif RANKS[b] >= RANKS[a]:
                bad.append(f"{src} ({a}) imports {dst} ({b})")
    assert not bad, "\n".join(sorted(bad))


#: Rooms of the pipeline, lowest first: a module may import its own room or a lower one.
PIPELINE_ROOMS = {"run": 1, "stages": 2, "methods": 3, "runner": 4}


def _room(module: str) -> int:
    parts = module.split(".")
    if module == "wasp_jax.pipeline.run.runner":
        return PIPELINE_ROOMS["runner"]
    return PIPELINE_ROOMS.get(parts[2], PIPELINE_ROOMS["runner"]) if len(parts) > 2 else 0


def test_pipeline_rooms_run_one_way():
    """Methods may use stages and the run infrastructure; stages never import a method; only
    the runner sees the methods."""
    bad = []
    for src, targets in GRAPH.items():
        if _part(src) != "pipeline":
            continue
        for dst in targets:
            if _part(dst) == "pipeline" and _room(dst) > _room(src):
                bad.append(f"{src} imports {dst}")
    assert not bad, "\n".join(sorted(bad))


def test_every_pipeline_module_is_in_a_room():
    loose = [
        m
        for m in MODULES
        if _part(m) == "pipeline"
        and len(m.split(".")) == 3
        and m.split(".")[2] not in PIPELINE_ROOMS
    ]
    assert loose == [], f"modules outside run/, stages/ and methods/: {loose}"


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
    return cycles


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, "\n".join(cycles)


def test_experiments_have_no_import_cycles():
    known = {}
    for path in sorted((REPO / "experiments").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        known[".".join(p for p in parts if p != "__init__")] = path
    graph = {name: _imports(path, name, known, "experiments") for name, path in known.items()}
    assert graph["experiments.bench.voting"], "the graph should see the benchmark's imports"
    cycles = _cycles(graph)
    assert not cycles, "\n".join(cycles)


def test_the_library_never_imports_its_command_line():
    bad = [f"{s} imports {d}" for s, ds in GRAPH.items() for d in ds if _part(d) == "cli"]
    assert all(s.startswith("wasp_jax.cli") for s in (b.split()[0] for b in bad)), bad


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_size(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    assert lines <= 400, f"{MODULES[name].relative_to(REPO)} has {lines} lines (limit 400)"


#: The longest a library function may be, unless its docstring says why (see below).
MAX_FUNCTION_LINES = 80


def test_no_fmt_skip_in_the_library():
    """The formatter owns the layout of the library: no line opts out of it."""
    bad = [
        f"{path.relative_to(REPO)}:{i}"
        for path in MODULES.values()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "# fmt: skip" in line or "# fmt: off" in line
    ]
    assert not bad, "formatter opt-outs in the library: " + ", ".join(bad)


#: A sentence of a docstring that starts "Long because".
_LONG_BECAUSE = re.compile(r"(?:^|[.!?:]\s+)Long because\b")


def _long_functions(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            excused = _LONG_BECAUSE.search(ast.get_docstring(node) or "")
            if length > MAX_FUNCTION_LINES and not excused:
                where = f"{path.relative_to(REPO)}:{node.lineno}"
                out.append(f"{where}:{node.name} ({length} lines)")
    return out


def test_no_long_functions_in_the_library():
    """No function (def line to last line) is over 80 lines, unless its docstring holds a
    sentence starting "Long because" that says why it reads best in one piece, e.g.
    "Long because the steps share a dozen locals and each is a few lines."."""
    bad = [entry for path in MODULES.values() for entry in _long_functions(path)]
    assert not bad, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(bad)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _one_letter_aliases(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        for alias in node.names:
            if alias.asname is None or len(alias.asname) != 1:
                continue
            full = alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
            if _is_module(full):
                out.append(f"{path.relative_to(REPO)}:{node.lineno} ({full} as {alias.asname})")
    return out


def test_no_single_letter_module_aliases_in_the_library():
    """`import x as Y` or `from a import b as Y` with a one-letter Y, where the name is a
    module, hides which module Y is: the library uses the module's name. (A class under a
    conventional letter, JAX's `PartitionSpec as P`, is not a module and is left alone.)"""
    bad = [entry for path in MODULES.values() for entry in _one_letter_aliases(path)]
    assert not bad, "one-letter module aliases: " + ", ".join(bad)


def test_kernels_install_under_the_project_name(tmp_path):
    """`kernels` on PyPI is another project's name (transformers probes for it): outside the
    repository it must not resolve to this project, while `wasp_jax.kernels` does."""
    code = (
        "import importlib.util, json\n"
        "spec = importlib.util.find_spec('kernels')\n"
        "import wasp_jax.kernels as k\n"
        "print(json.dumps([spec.origin if spec else None, k.__file__]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    import json

    origin, ours = json.loads(out.stdout)
    assert origin is None or not pathlib.Path(origin).resolve().is_relative_to(REPO), origin
    assert pathlib.Path(ours).resolve() == REPO / "kernels" / "__init__.py"
    assert importlib.util.find_spec("wasp_jax.kernels") is not None


def test_public_entry_points():
    import wasp_jax
    from wasp_jax import embed, plm
    from wasp_jax.models.embedder import load_embedder
    from wasp_jax.models.generator import load_generator
    from wasp_jax.pipeline.stages.vote import vote_and_noise
    from wasp_jax.privacy.accounting import calibrate_sigma

    assert plm.load_generator is load_generator and embed.load_embedder is load_embedder
    assert wasp_jax.vote_and_noise is vote_and_noise
    assert wasp_jax.calibrate_sigma is calibrate_sigma
    assert wasp_jax.privacy.calibrate_sigma is calibrate_sigma
    assert callable(wasp_jax.run) and callable(wasp_jax.privacy_plan)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = wasp_jax.no_such_name


def test_front_door_exports_the_entry_points():
    import subprocess
    import sys

    import wasp_jax

    for name in ("load_task", "read_labeled_jsonl", "demo_config", "replace", "run",
                 "load_generator", "load_embedder", "evaluate_files"):  # fmt: skip
        assert name in wasp_jax.__all__ and name in dir(wasp_jax), name
        assert callable(getattr(wasp_jax, name)), name
    assert wasp_jax.load_task("imdb").labels == ("negative", "positive")
    # importing the package stays light: nothing heavy until a name is used
    code = "import sys, wasp_jax; print(int('jax' in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "0", out.stderr


def test_every_package_is_listed_for_installation():
    """A wheel holds only the packages pyproject.toml lists: every folder of the library with an
    __init__.py must be there (an editable install would hide a missing one)."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "wasp_jax").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
