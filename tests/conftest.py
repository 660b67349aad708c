"""Shared test setup: one torch thread, no network, tiny timm ViTs."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import importlib  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from nvpt.config import load_config  # noqa: E402

# A 3-block, 32-px ViT: fast on one core, every code path of the real ViT-B/16.
TINY = ["model.name=vit_tiny_patch16_224", "model.pretrained=false", "model.img_size=32",
        "model.kwargs={patch_size: 8, depth: 3, embed_dim: 48, num_heads: 3}", "model.num_classes=5",
        "prompt.length=4"]


def tiny_cfg(*overrides: str):
    return load_config(None, TINY + list(overrides))


@pytest.fixture
def make_cfg():
    return tiny_cfg


def load_tool(name: str):
    """tools/<name>.py as a fresh module (its `import _bootstrap` resolved), without running its __main__ block."""
    import importlib.util
    import sys

    tools = Path(__file__).resolve().parent.parent / "tools"
    sys.path.insert(0, str(tools))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_tool", tools / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(tools))
    return module


def run_tool(monkeypatch, capsys, name: str, *argv) -> tuple[int, str, str]:
    """tools/<name>.py's main in this process, through run_main as its __main__ does: (exit status, stdout, stderr)."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "tools"))
    module = importlib.import_module(name)
    rc = module.run_main(module.main, [str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err
