"""A frozen timm VisionTransformer with prompt tokens attached through hooks.

timm's own forward runs unmodified; three kinds of hooks on its modules do VPT's work:
  * a forward pre-hook on blocks[0] inserts the layer-0 prompts right after the prefix
    (class/register) tokens, i.e. after the position embedding, with no position embedding
    of their own:            x [B, n_prefix + N, D] -> [B, n_prefix + P + N, D]
  * deep prompting: a pre-hook on every later block i replaces the prompt slots with layer
    i's own prompts (the previous layer's prompt outputs are discarded)
  * a forward hook on the last block removes the prompt outputs before the final norm and
    pooling, so `avg` pooling and the class token see the same token layout as timm.
Hooks beat a copied forward: any timm ViT variant (class token or not, registers, avg or
token pooling) keeps working, and no timm code is duplicated.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
from torch import nn
from timm.models.vision_transformer import VisionTransformer

from nvpt.models.prompts import StaticPrompts


class PromptedViT(nn.Module):
    def __init__(self, backbone: VisionTransformer, method: str, prompts: nn.Module | None, dropout: float = 0.0):
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.prompts = prompts
        self.prompt_dropout = nn.Dropout(dropout)
        self.num_prefix_tokens = getattr(backbone, "num_prefix_tokens", 0)  # Swin (PromptedSwin) has none
        self.num_classes = backbone.num_classes
        self.deployed = False
        # [L, P, D] during a forward pass. Kept in a plain dict: assigning a Parameter (VPT's
        # tokens) to a Module attribute would register it as a second parameter.
        self._active: dict[str, torch.Tensor | None] = {"tokens": None}
        self._freeze()
        if prompts is not None:
            self._install_hooks()

    # -- parameters -------------------------------------------------------------------
    def _freeze(self) -> None:
        """Only prompts and head train, except `full`, where everything does."""
        train_all = self.method == "full"
        for p in self.backbone.parameters():
            p.requires_grad_(train_all)
        for p in self.backbone.get_classifier().parameters():
            p.requires_grad_(True)

    def train(self, mode: bool = True) -> "PromptedViT":
        super().train(mode)
        if self.method != "full":
            self.backbone.eval()  # frozen backbone: dropout/drop-path stay off while prompts train
        return self

    # -- hooks ------------------------------------------------------------------------
    def _install_hooks(self) -> None:
        blocks = self.backbone.blocks
        num_layers = self.prompts.shape[0]
        blocks[0].register_forward_pre_hook(self._insert_hook)
        for i in range(1, min(num_layers, len(blocks))):
            # a partial of a bound method (not a closure): copy.deepcopy(model) rebinds it to the copy
            blocks[i].register_forward_pre_hook(functools.partial(self._replace_hook, i))
        blocks[-1].register_forward_hook(self._remove_hook)

    def _prompting(self) -> bool:
        """True inside this model's forward with at least one prompt token (hooks are no-ops otherwise)."""
        tokens = self._active["tokens"]
        return tokens is not None and tokens.shape[1] > 0

    def _batch_prompts(self, layer: int, batch: int, dtype: torch.dtype) -> torch.Tensor:
        return self._expand(self._active["tokens"][layer], batch, dtype)

    def _expand(self, tokens: torch.Tensor, batch: int, dtype: torch.dtype) -> torch.Tensor:
        """[P, D] -> [B, P, D] in the activations' dtype, with prompt dropout."""
        tokens = tokens.to(dtype).unsqueeze(0).expand(batch, -1, -1)  # [B, P, D]
        if self.prompt_dropout.p == 0:  # skip a module call per block: the hooks run on every forward
            return tokens
        return self.prompt_dropout(tokens)  # a fresh mask per sample (VPT)

    def _insert_hook(self, module, args):
        if not self._prompting():
            return None
        x = args[0]
        n = self.num_prefix_tokens
        prompts = self._batch_prompts(0, x.shape[0], x.dtype)
        return (torch.cat([x[:, :n], prompts, x[:, n:]], dim=1),) + tuple(args[1:])

    def _replace_hook(self, layer: int, module, args):
        if not self._prompting():
            return None
        x = args[0]
        n, p = self.num_prefix_tokens, self._active["tokens"].shape[1]
        prompts = self._batch_prompts(layer, x.shape[0], x.dtype)
        return (torch.cat([x[:, :n], prompts, x[:, n + p:]], dim=1),) + tuple(args[1:])

    def _remove_hook(self, module, args, output):
        if not self._prompting():
            return None
        n, p = self.num_prefix_tokens, self._active["tokens"].shape[1]
        return torch.cat([output[:, :n], output[:, n + p:]], dim=1)  # [B, n_prefix + N, D]

    @contextmanager
    def _prompts_active(self):
        self._active["tokens"] = self.prompts() if self.prompts is not None else None  # once per forward pass
        try:
            yield
        finally:
            self._active["tokens"] = None

    # -- timm model contract ----------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] (normalised) -> tokens [B, n_prefix + N, D], prompt outputs removed."""
        with self._prompts_active():
            return self.backbone.forward_features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.backbone.forward_head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- prompts ----------------------------------------------------------------------
    def prompt_tokens(self) -> torch.Tensor:
        """Tokens entering each prompted layer in eval mode, [L, P, D] (no dropout, no noise)."""
        if self.prompts is None:
            embed_dim = self.backbone.embed_dim
            return torch.zeros(0, 0, embed_dim)
        was_training = self.prompts.training
        self.prompts.eval()
        try:
            with torch.no_grad():
                return self.prompts().detach().clone()
        finally:
            self.prompts.train(was_training)

    def aux_loss(self) -> torch.Tensor | None:
        """Extra loss terms of the prompt source for the last forward (the firing-rate penalty)."""
        rate_loss = getattr(self.prompts, "rate_loss", None)
        return rate_loss() if rate_loss is not None else None

    def set_training_steps(self, total: int) -> None:
        """Tell the prompt source how many training iterations the run has (spike.noise_schedule); else a no-op."""
        setter = getattr(self.prompts, "set_training_steps", None)
        if setter is not None:
            setter(total)

    def lr_scales(self) -> dict[str, float]:
        """{parameter name: learning-rate multiplier} for the parameters whose rate differs (spike.current_lr_scale)."""
        scales = getattr(self.prompts, "lr_scales", None)
        return {f"prompts.{name}": value for name, value in scales().items()} if scales is not None else {}

    @torch.no_grad()
    def deploy(self) -> "PromptedViT":
        """Freeze the eval-mode prompts into a static tensor: the forward pass becomes VPT's."""
        if self.prompts is not None and not isinstance(self.prompts, StaticPrompts):
            self.prompts = StaticPrompts(self.prompt_tokens())
        self.deployed = True
        return self
