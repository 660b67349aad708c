"""LoRA (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022, arXiv:2106.09685) on
timm's ViT through Hugging Face peft (an optional extra: pip install 'spike-nvpt[peft]').

peft's LoraModel injects its lora.Linear layers in place of timm's `qkv` Linear layers (and, with lora.mlp,
the MLP's fc1 and fc2): y = W x + (alpha / r) * B A dropout(x), A [r, in] Kaiming-uniform, B [out, r] zero,
so training starts at the frozen model (peft's defaults). Deploy is peft's merge_and_unload: W += (alpha/r) B A
and every lora.Linear is replaced by its base nn.Linear, so the deployed backbone is timm's plain model.

peft (and through it transformers) is imported only here, only when a lora model is built.
"""
from __future__ import annotations

from torch import nn

from nvpt.errors import NVPTError

ADAPTER = "default"  # peft's adapter name


def _peft():
    try:
        from peft import LoraConfig
        from peft.tuners.lora import LoraLayer, LoraModel
    except ImportError as exc:
        raise NVPTError(f"prompt.method=lora needs Hugging Face peft ({exc.name or 'peft'} is missing): "
                        "pip install 'peft==0.21.2' (the project's [peft] extra)") from None
    return LoraConfig, LoraLayer, LoraModel


def lora_targets(mlp: bool) -> list[str]:
    return ["qkv", "fc1", "fc2"] if mlp else ["qkv"]


def attach_lora(backbone: nn.Module, rank: int, alpha: float, dropout: float, mlp: bool):
    """Inject peft's LoRA layers into the backbone in place; returns peft's LoraModel (not a submodule of
    anything: it only serves merge_and_unload)."""
    LoraConfig, _, LoraModel = _peft()
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=lora_targets(mlp), bias="none")
    try:
        return LoraModel(backbone, config, ADAPTER)  # what peft.inject_adapter_in_model does, keeping the tuner
    except ValueError as exc:  # no module named qkv / fc1 / fc2
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NVPTError(f"lora: peft found no {'/'.join(lora_targets(mlp))} Linear layers in this backbone ({first[:200]})") from None


def lora_layers(backbone: nn.Module) -> list[nn.Module]:
    _, LoraLayer, _ = _peft()
    return [m for m in backbone.modules() if isinstance(m, LoraLayer)]


def lora_trainable(layer: nn.Module) -> list[nn.Module]:
    """The trainable parts of one peft LoraLayer (lora_A, lora_B, ...: peft's own adapter_layer_names)."""
    return [getattr(layer, name) for name in layer.adapter_layer_names]
