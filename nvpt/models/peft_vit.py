"""The conventional parameter-efficient baselines on the same frozen timm backbone: BitFit, an adapter, LoRA, SSF.

    bitfit   every bias of the backbone (Zaken, Ravfogel and Goldberg, "BitFit", ACL 2022, arXiv:2106.10199)
    adapter  AdaptFormer's parallel bottleneck adapter beside every MLP (nvpt/models/adapter.py)
    lora     LoRA on the attention's qkv projections (and optionally the MLP) through Hugging Face peft (nvpt/models/lora.py)
    ssf      a learned scale and shift after every linear and norm op (nvpt/models/ssf.py)

Each also trains the classification head, as the prompt methods do. A PeftViT is a PromptedViT without prompts:
the same timm model contract, checkpoints (the trainable parameters only: nvpt.engine.checkpoint_state), optimizer
groups, DDP and resume. The method's parts are attached to timm's own modules (hooks, or peft's in-place layers),
never a copied backbone. `deploy()` folds what can be folded into the frozen weights:

    bitfit   nothing to fold: the tuned biases are the backbone's own
    lora     peft's merge_and_unload: W += (alpha / r) B A, timm's plain nn.Linear back in place
    ssf      gamma and beta folded into the preceding op's weight and bias, hooks removed
    adapter  cannot fold (a ReLU bottleneck): the deployed model keeps its adapters (2 small matmuls per block)

so a deployed bitfit, lora or ssf model has exactly the bare backbone's modules and costs what it costs.
"""
from __future__ import annotations

import logging

from torch import nn

from nvpt.models.adapter import ParallelAdapter, attach_adapters
from nvpt.models.prompted_vit import PromptedViT
from nvpt.models.ssf import ScaleShift, attach_ssf, fold_ssf

log = logging.getLogger("nvpt")

FOLDS = {"bitfit": True, "lora": True, "ssf": True, "adapter": False}  # does deploy() leave the bare backbone?


class PeftViT(PromptedViT):
    def __init__(self, backbone: nn.Module, method: str, lora_model=None, ssf_handles=None):
        if method not in FOLDS:
            raise ValueError(f"PeftViT does not know method {method!r}")
        super().__init__(backbone, method, prompts=None)  # calls _freeze below
        # plain attributes, not submodules: peft's LoraModel holds the backbone itself
        self._parts = {"lora_model": lora_model, "ssf_handles": ssf_handles or []}

    # -- what trains ------------------------------------------------------------------
    def tuned_modules(self) -> list[nn.Module]:
        """The method's own modules (empty for bitfit, whose parameters are the backbone's biases)."""
        if self.method == "adapter":
            return [m for m in self.backbone.modules() if isinstance(m, ParallelAdapter)]
        if self.method == "ssf":
            return [m for m in self.backbone.modules() if isinstance(m, ScaleShift)]
        if self.method == "lora" and not self.deployed:
            from nvpt.models.lora import lora_layers, lora_trainable

            return [part for layer in lora_layers(self.backbone) for part in lora_trainable(layer)]
        return []

    def tuned_parameters(self) -> list[nn.Parameter]:
        if self.method == "bitfit":
            head = {id(p) for p in self.backbone.get_classifier().parameters()}
            return [p for name, p in self.backbone.named_parameters()
                    if name.rsplit(".", 1)[-1] == "bias" and id(p) not in head]
        return [p for module in self.tuned_modules() for p in module.parameters()]

    def _freeze(self) -> None:
        super()._freeze()  # backbone frozen, head trainable
        for p in self.tuned_parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True) -> "PeftViT":
        super().train(mode)  # the frozen backbone stays in eval mode...
        for module in self.tuned_modules():  # ...the method's own parts (their dropout) follow `mode`
            module.train(mode)
        return self

    # -- deploy -----------------------------------------------------------------------
    def deploy(self) -> "PeftViT":
        """Fold the method into the frozen weights where it allows (module docstring); idempotent."""
        if self.deployed:
            return self
        if self.method == "lora":
            self._parts["lora_model"].merge_and_unload()  # in place: the lora.Linear layers become nn.Linear again
            self._parts["lora_model"] = None
        elif self.method == "ssf":
            fold_ssf(self.backbone, self._parts["ssf_handles"])
        elif self.method == "adapter":
            log.info("adapter: the ReLU bottleneck adapters cannot be folded into the frozen weights; "
                     "the deployed model keeps them")
        self.deployed = True
        self.eval()
        return self


def build_peft_model(cfg, backbone: nn.Module) -> PeftViT:
    """Attach cfg.prompt.method's parts to the backbone and wrap it."""
    method = cfg.prompt.method
    lora_model, handles = None, None
    if method == "adapter":
        attach_adapters(backbone, cfg.adapter.bottleneck, cfg.adapter.scale, cfg.adapter.dropout)
    elif method == "lora":
        from nvpt.models.lora import attach_lora  # imports peft: only for lora

        lora_model = attach_lora(backbone, cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, cfg.lora.mlp)
    elif method == "ssf":
        _, handles = attach_ssf(backbone, cfg.ssf.init_std)
    return PeftViT(backbone, method, lora_model=lora_model, ssf_handles=handles)
