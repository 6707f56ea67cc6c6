"""No module imports upward against the data path: the layer table in ``syncd/__init__.py``
is read here and every import of every module (inside functions too) is held to it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import syncd

PACKAGE = Path(syncd.__file__).parent
# Third-party libraries that one part of syncd alone may import: it translates their errors.
ONLY_IN = {"stomp": {"broker"}}


def layers() -> dict[str, tuple[int, int]]:
    """Each top-level unit (``apply``, ``routing``…): the rank of its layer (lowest 0) and of
    its part of the layer (parts apart by ``|`` may not import each other)."""
    doc = syncd.__doc__ or ""
    # Rows are indented; columns (layer, its units, what it is) apart by two spaces or more.
    rows = [re.split(r"\s{2,}", line.strip()) for line in doc.splitlines() if line[:4] == "    "]
    return {
        unit: (rank, side)
        for rank, row in enumerate(rows)
        for side, part in enumerate(row[1].split("|"))
        for unit in part.split()
    }


def unit_of(module: str) -> str | None:
    """``syncd.apply.sql`` -> ``apply``; None outside syncd."""
    parts = module.split(".")
    return parts[1] if parts[0] == "syncd" and len(parts) > 1 else None


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, with the line: ``from syncd import x`` names syncd.x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}:{node.lineno}: a relative import"
            base = node.module or ""
            if base == "syncd":
                found += [(node.lineno, f"syncd.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, base))
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_layer_table_names_every_part_of_the_package() -> None:
    ranks = layers()
    units = {
        p.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for p in modules()
        if p.name != "__init__.py" or p.parent != PACKAGE
    }
    assert units - set(ranks) == set(), "add these to the layer table in syncd/__init__.py"
    assert set(ranks) - units == set(), "the layer table names what the package lacks"


def upward(path: Path, here: str) -> list[str]:
    """The imports of ``path`` (a module of unit ``here``) from a layer above its own, or
    from another part of its own layer."""
    ranks = layers()
    found = []
    for line, module in imports(path):
        unit = unit_of(module)
        if unit is None:
            continue
        (layer, side), (own_layer, own_side) = ranks[unit], ranks[here]
        if layer > own_layer:
            found.append(f"line {line} imports {module} ({unit} is above {here})")
        elif layer == own_layer and side != own_side:
            found.append(f"line {line} imports {module} ({unit} is beside {here})")
    return found


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_its_own(path: Path) -> None:
    here = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    if here != "__init__":  # the package's own docstring
        assert upward(path, here) == []


@pytest.mark.parametrize("library", sorted(ONLY_IN))
def test_a_library_whose_errors_one_part_translates_is_imported_there_alone(library: str) -> None:
    outside = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in modules()
        for line, module in imports(path)
        if module.split(".")[0] == library
        and path.relative_to(PACKAGE).parts[0] not in ONLY_IN[library]
    ]
    assert outside == []


def test_the_check_sees_an_upward_import_also_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from syncd import errors, routing\n"
        "def f():\n    from syncd.pipeline.loop import ApplyLoop\n    import syncd.daemon.main\n"
    )
    assert upward(module, "apply") == [
        "line 3 imports syncd.pipeline.loop (pipeline is above apply)",
        "line 4 imports syncd.daemon.main (daemon is above apply)",
    ]
    assert upward(module, "errors") == [
        "line 1 imports syncd.routing (routing is above errors)",
        "line 3 imports syncd.pipeline.loop (pipeline is above errors)",
        "line 4 imports syncd.daemon.main (daemon is above errors)",
    ]
    assert upward(module, "capture") == [
        "line 3 imports syncd.pipeline.loop (pipeline is beside capture)",
        "line 4 imports syncd.daemon.main (daemon is above capture)",
    ]


def test_the_readme_layout_names_every_module() -> None:
    readme = (PACKAGE.parent / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    unnamed = [
        str(path.relative_to(PACKAGE))
        for path in modules()
        if path.name not in ("__init__.py", "__main__.py")
        and f"`{path.name}`" not in layout
        and f"`{path.relative_to(PACKAGE)}`" not in layout
    ]
    packages = [p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()]
    unnamed += [f"{name}/" for name in packages if f"`{name}/`" not in layout]
    assert unnamed == [], "add these to README's Layout section, one line each"
