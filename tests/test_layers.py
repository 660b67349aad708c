"""Data flows one way through the package: config -> data -> model -> engine -> robustness -> plots, and
the modules that compose them (a whole run, comparisons, the paper, the benchmark, export) sit on top.
No module imports one of a later layer, not even inside a function."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "nvpt"
LAYERS = [
    ("foundations", {"nvpt.errors", "nvpt.io", "nvpt.config", "nvpt.cli", "nvpt.outputs", "nvpt.suites"}),
    ("data", {"nvpt.data"}),
    ("model", {"nvpt.spiking", "nvpt.models"}),
    ("engine", {"nvpt.engine"}),
    ("robustness", {"nvpt.robustness"}),
    ("plots", {"nvpt.viz"}),
    ("compositions", {"nvpt.pipeline", "nvpt.pretrain", "nvpt.comparison", "nvpt.paper", "nvpt.cost", "nvpt.benchmark",
                      "nvpt.benchmark_eval", "nvpt.schedule", "nvpt.export", "nvpt.selection", "nvpt.tables"}),
]


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("nvpt")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nvpt"):
            found.add(node.module)
    return found


def test_no_import_points_back():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20
    backwards = []
    for path in modules:
        own = module_name(path)
        for target in imports(path):
            if layer_of(target) > layer_of(own):
                backwards.append(f"{own} ({LAYERS[layer_of(own)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not backwards, "\n".join(backwards)


def test_the_check_sees_function_level_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from nvpt.robustness.evaluate import evaluate_robustness\n")
    assert imports(probe) == {"nvpt.robustness.evaluate"}
    assert layer_of("nvpt.robustness.evaluate") > layer_of("nvpt.engine.run")
