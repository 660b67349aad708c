"""Model construction: `build_model(cfg)` -> PromptedViT (PromptedSwin on a timm SwinTransformer)."""
from __future__ import annotations

import functools

import torch
from timm.models.swin_transformer import SwinTransformer

from nvpt.config import METHODS, PEFT_METHODS
from nvpt.errors import NVPTError
from nvpt.models.backbone import create_backbone, vpt_init_bound
from nvpt.models.peft_vit import PeftViT, build_peft_model
from nvpt.models.prompted_swin import PromptedSwin, prompt_grid, prompt_rows
from nvpt.models.prompted_vit import PromptedViT
from nvpt.models.prompts import StaticPrompts, VPTPrompts

SWIN_METHODS = ("linear", "vpt_shallow", "vpt_deep", "spike_nvpt", "full")

__all__ = ["build_model", "PromptedViT", "PromptedSwin", "PeftViT", "StaticPrompts", "VPTPrompts", "create_backbone"]


def build_model(cfg, deployed: bool = False) -> PromptedViT:
    """Frozen timm ViT or Swin + the prompt source of cfg.prompt.method (see docs/method.md).

    deployed=True builds a spike_nvpt model whose prompts are a static buffer (filled by
    load_state_dict): it needs no SpikingJelly, for inference and exported prompts.
    """
    if cfg.model.num_classes is None:
        raise NVPTError("config key 'model.num_classes' is null; set it (tools/train.py takes it from the dataset)")
    backbone = create_backbone(cfg)
    method, length = cfg.prompt.method, cfg.prompt.length
    if isinstance(backbone, SwinTransformer) and method not in SWIN_METHODS:  # the PEFT baselines are ViT-only
        raise NVPTError(f"prompt.method={method} does not run on Swin ('{cfg.model.name}'); "
                        f"Swin takes {', '.join(SWIN_METHODS)}")
    if method in PEFT_METHODS:  # bitfit, adapter, lora, ssf: no prompts (nvpt/models/peft_vit.py)
        return build_peft_model(cfg, backbone)
    if isinstance(backbone, SwinTransformer):  # prompts [R, P, G]: rows of G channels per block (prompted_swin)
        wrapper, dim, rows = PromptedSwin, prompt_grid(backbone)[0], functools.partial(prompt_rows, backbone)
    else:  # prompts [L, P, D]: L = depth (deep) or 1
        wrapper, dim = PromptedViT, backbone.embed_dim

        def rows(deep: bool) -> int:
            return len(backbone.blocks) if deep else 1
    bound = vpt_init_bound(backbone)
    if method in ("linear", "full"):
        prompts = None
    elif method in ("vpt_shallow", "vpt_deep"):
        prompts = VPTPrompts(rows(method == "vpt_deep"), length, dim, bound)
    elif method == "spike_nvpt" and deployed:
        prompts = StaticPrompts(torch.zeros(rows(cfg.prompt.deep), length, dim))
    elif method == "spike_nvpt":
        from nvpt.models.spike_prompts import SpikePrompts  # imports SpikingJelly

        prompts = SpikePrompts(rows(cfg.prompt.deep), length, dim, cfg.spike, default_scale=bound, seed=cfg.seed)
    else:
        raise NVPTError(f"unknown prompt.method {method!r}; choose one of {', '.join(METHODS)}")
    model = wrapper(backbone, method, prompts, dropout=cfg.prompt.dropout)
    model.deployed = deployed and method == "spike_nvpt"
    return model
