"""The package's architecture, enforced: one-way layers, no import cycle, small modules, cheap import.

Layers, lowest first (a module imports only from its own layer or lower ones; see
``docs/architecture.md``)::

    foundation  z2t_dask (``__version__``), errors, caching, compiled
    config      z2t_dask.config
    physics     z2t_dask.physics       (pure NumPy models: no Dask graphs, no files but the Zmap)
    engine      z2t_dask.engine        (assembly from a config, the lazy render graph, streaming)
    io          z2t_dask.io            (formats; knows arrays and metadata, not samples)
    sample      z2t_dask.sample        (one sample: simulate / save)
    batch       z2t_dask.batch         (many samples on dask.distributed)
    tools       z2t_dask.tools, z2t_dask.testing  (CLI, preview, inspect, results, docs, test helpers)

Every import counts, at module level or inside a function (lazy imports included).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import z2t_dask

PACKAGE = Path(z2t_dask.__file__).parent
LAYERS = ["foundation", "config", "physics", "engine", "io", "sample", "batch", "tools"]
FOUNDATION = {"z2t_dask", "z2t_dask.errors", "z2t_dask.caching", "z2t_dask.compiled"}
#: Modules allowed over MAX_LINES because each is one coherent model (the exact PSF model and its
#: fast interpolated library).
WHOLE_MODELS = {"z2t_dask.physics.optics.psf", "z2t_dask.physics.optics.psf_library"}
MAX_LINES = 500
#: Upward imports allowed, each a function-level import behind a convenience method of the
#: public API (never at module level, so no import cycle): ``Sample.preview`` draws with
#: :mod:`z2t_dask.tools.preview` (matplotlib), as ``xarray.DataArray.plot`` does.
UPWARD_ALLOWED = {("z2t_dask.sample.core", "z2t_dask.tools.preview")}


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    head = module.split(".")[1]
    if head == "testing":
        return "tools"
    if head not in LAYERS:
        raise AssertionError(f"{module}: not in any layer; add it to LAYERS in this test and to the docs")
    return head


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, *, top_level_only: bool = False) -> list[tuple[int, str]]:
    """``(line, module)`` of every z2t_dask import in a file (resolving ``from X import submodule``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = package_modules()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "z2t_dask"]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: relative import; use absolute z2t_dask imports"
            if node.module is None or node.module.split(".")[0] != "z2t_dask":
                continue
            for a in node.names:  # `from z2t_dask.physics import camera` imports the submodule
                sub = f"{node.module}.{a.name}"
                out.append((node.lineno, sub if sub in modules else node.module))
    return out


def test_every_module_belongs_to_a_layer() -> None:
    for name in package_modules():
        assert layer_of(name) in LAYERS


def test_imports_go_one_way_down_the_layers() -> None:
    violations = []
    for name, path in package_modules().items():
        if name == "z2t_dask":  # the lazy facade: see test_package_init_imports_only_for_type_checkers
            continue
        rank = LAYERS.index(layer_of(name))
        top = {t for _, t in imports_of(path, top_level_only=True)}
        violations += [f"{name} imports {t} at module level" for n, t in UPWARD_ALLOWED if n == name and t in top]
        for line, target in imports_of(path):
            if LAYERS.index(layer_of(target)) > rank and (name, target) not in UPWARD_ALLOWED:
                violations.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line}: {layer_of(name)} module {name} "
                    f"imports {target} ({layer_of(target)})"
                )
    assert not violations, "imports against the layers:\n" + "\n".join(violations)


def test_package_init_imports_only_for_type_checkers() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        for sub in ast.walk(node):
            if isinstance(sub, ast.ImportFrom) and (sub.level or (sub.module or "").startswith("z2t_dask")):
                raise AssertionError(f"z2t_dask/__init__.py:{sub.lineno}: runtime package import (keep it lazy)")


def test_no_import_cycle_at_module_level() -> None:
    modules = package_modules()
    graph = {
        name: {t for _, t in imports_of(path, top_level_only=True) if t in modules and t != name}
        for name, path in modules.items()
    }
    # Only real imports count: the implicit import of a submodule's parent package (already
    # loading when its submodule runs) is not an edge Python can trip over.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(package_modules()))
def test_modules_are_small(name: str) -> None:
    if name in WHOLE_MODELS:
        return
    lines = len(package_modules()[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines (split it by responsibility; limit {MAX_LINES})"


def test_import_is_cheap_and_lazy() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import z2t_dask; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('numpy', 'dask', 'h5py', 'zarr', 'tifffile', 'scipy') if m in sys.modules]; "
        "print(dt, ','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) < 0.3
    assert len(out) == 1, f"`import z2t_dask` imported {out[1]}"


def test_every_error_class_lives_in_errors_py() -> None:
    """One hierarchy in one place: an exception or warning class defined elsewhere is not exported."""
    from z2t_dask import errors

    defined_elsewhere = []
    for name, path in package_modules().items():
        if name == "z2t_dask.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                (getattr(b, "id", None) or getattr(b, "attr", "")).endswith(("Error", "Exception", "Warning"))
                for b in node.bases
            ):
                defined_elsewhere.append(f"{name}.{node.name}")
    assert not defined_elsewhere, f"define these in z2t_dask/errors.py and export them: {defined_elsewhere}"
    assert set(errors.__all__) <= set(z2t_dask.__all__)


def test_public_names_resolve_and_errors_share_one_base() -> None:
    for name in z2t_dask.__all__:
        assert getattr(z2t_dask, name) is not None
    from z2t_dask import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert getattr(z2t_dask, name) is cls
        base = errors.Z2TWarning if issubclass(cls, Warning) else errors.Z2TError
        assert issubclass(cls, base), name
        assert len(cls.__mro__) > 3 or cls in (errors.Z2TError, errors.Z2TWarning), f"{name} lost its builtin base"
