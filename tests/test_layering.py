"""The import arrows point one way: app -> screens -> widgets -> services -> engine's plain
modules. The engine never imports textual or tui/; lower layers never import higher ones."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["tui.app", "tui.screens", "tui.widgets", "tui.services", "engine"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _layer(module: str) -> int | None:
    for i, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return i
    return None


def _modules(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        yield name.removesuffix(".__init__"), path


def test_engine_never_imports_textual_or_tui():
    bad = [(name, imp) for name, path in _modules("engine") for imp in _imports(path)
           if imp.split(".")[0] in ("textual", "tui")]
    assert bad == []


def test_tui_layers_only_import_downwards():
    bad = []
    for name, path in _modules("tui"):
        own = _layer(name)
        if own is None:  # tui/main.py, the dispatcher, sits above everything
            continue
        for imp in _imports(path):
            other = _layer(imp)
            if other is not None and other < own:
                bad.append((name, imp))
    assert bad == []
