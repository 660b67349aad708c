"""Model construction: `build_model(cfg)` -> PromptedViT."""
from __future__ import annotations

import torch

from nvpt.config import METHODS, PEFT_METHODS
from nvpt.errors import NVPTError
from nvpt.models.backbone import create_backbone, vpt_init_bound
from nvpt.models.peft_vit import PeftViT, build_peft_model
from nvpt.models.prompted_vit import PromptedViT
from nvpt.models.prompts import StaticPrompts, VPTPrompts

__all__ = ["build_model", "PromptedViT", "PeftViT", "StaticPrompts", "VPTPrompts", "create_backbone"]


def build_model(cfg, deployed: bool = False) -> PromptedViT:
    """Frozen timm ViT + the prompt source of cfg.prompt.method (see docs/method.md).

    deployed=True builds a spike_nvpt model whose prompts are a static buffer (filled by
    load_state_dict): it needs no SpikingJelly, for inference and exported prompts.
    """
    if cfg.model.num_classes is None:
        raise NVPTError("config key 'model.num_classes' is null; set it (tools/train.py takes it from the dataset)")
    backbone = create_backbone(cfg)
    if cfg.prompt.method in PEFT_METHODS:  # bitfit, adapter, lora, ssf: no prompts (nvpt/models/peft_vit.py)
        return build_peft_model(cfg, backbone)
    method, length = cfg.prompt.method, cfg.prompt.length
    depth, dim = len(backbone.blocks), backbone.embed_dim
    bound = vpt_init_bound(backbone)
    if method in ("linear", "full"):
        prompts = None
    elif method in ("vpt_shallow", "vpt_deep"):
        prompts = VPTPrompts(depth if method == "vpt_deep" else 1, length, dim, bound)
    elif method == "spike_nvpt" and deployed:
        prompts = StaticPrompts(torch.zeros(depth if cfg.prompt.deep else 1, length, dim))
    elif method == "spike_nvpt":
        from nvpt.models.spike_prompts import SpikePrompts  # imports SpikingJelly

        layers = depth if cfg.prompt.deep else 1
        prompts = SpikePrompts(layers, length, dim, cfg.spike, default_scale=bound, seed=cfg.seed)
    else:
        raise NVPTError(f"unknown prompt.method {method!r}; choose one of {', '.join(METHODS)}")
    model = PromptedViT(backbone, method, prompts, dropout=cfg.prompt.dropout)
    model.deployed = deployed and method == "spike_nvpt"
    return model
