"""A frozen timm SwinTransformer with VPT-style prompts inside every window, through hooks.

The VPT reference's Swin formulation (Jia et al. 2022, KMnP/vpt src/models/vit_prompt/swin_transformer.py),
on timm's own modules (no copied backbone); docs/method.md draws the layout:
  * a block's P prompt tokens have the block's width (its stage's); they sit beside the [B, H, W, C]
    feature map, never in it. Before the block's attention they pass its norm1 and are prepended to the
    tokens of every window of their own image: each window attends over [P prompts, Wh*Ww tokens].
    The relative position bias and the shifted-window mask get zero rows and columns for the prompts
    (PromptableWindowAttention): prompts attend to every token of the window, and every token to them.
  * the prompt outputs of the windows of an image are averaged (the reference's mean over windows),
    then go through the block's residual and MLP like a token: they are what the next block carries
    (shallow prompting) unless that block has its own prompts (deep prompting: every block).
  * patch merging (timm: at the start of stages 1, 2, ...) merges the feature map only; carried prompts
    take its norm and reduction as four copies of themselves, [p, p, p, p] (4C -> 2C), as in the reference.
  * the final norm is applied to the last block's prompt outputs too, and timm's average pool runs over
    the P prompt outputs and the H*W tokens together, as the reference's avgpool over its [B, P + H*W, C]:
    with prompts, forward_features returns a 1 x (P + H*W) token grid [B, 1, P + H*W, C] (NHWC, so
    timm's head pools over it unchanged) instead of the [B, H, W, C] map.
Unlike the reference, which tiles the prompts window-major over the batch and averages them back with
another order (an image's prompt outputs then mix windows of other images of the batch), each window
here is paired with its own image's prompts: an image's output does not depend on the rest of its batch.

Storage: the stages' widths differ (Swin-B: 128, 256, 512, 1024), so one prompt tensor [L, P, D] with a
single D does not fit. The prompts are one [R, P, G] tensor instead, G = gcd of the widths (stage 0's
width for every timm swin_*): block b of width D_b = k_b * G owns k_b consecutive rows, row c of them
holding its channels [c*G, (c+1)*G). R = sum of k_b over the prompted blocks (deep: all; shallow: the
first). Everything elementwise (VPT tokens, the IF neurons, per-channel scale and shift, the bit-packed
export, deploy) works on that tensor unchanged, and its element count is exactly the prompts' (e.g.
Swin-B deep: 24 blocks, R = 2*1 + 2*2 + 18*4 + 2*8 = 94 rows of 128). spike.scale=layer learns one
scale per row: per block on stage 0, k_b scales for a block of a later stage. `block_prompts` gives
the per-block view [P, D_b].
"""
from __future__ import annotations

import functools
import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformer, WindowAttention

from nvpt.errors import NVPTError
from nvpt.models.prompted_vit import PromptedViT


def block_widths(backbone: SwinTransformer) -> list[int]:
    """Width of every block, in forward order (stage by stage)."""
    return [block.dim for stage in backbone.layers for block in stage.blocks]


def prompt_grid(backbone: SwinTransformer) -> tuple[int, list[int]]:
    """(G, [k_b per block]): the row width of the prompt tensor and how many rows each block owns."""
    widths = block_widths(backbone)
    width = math.gcd(*widths)
    return width, [w // width for w in widths]


def join_rows(rows: torch.Tensor) -> torch.Tensor:
    """A block's k rows [k, P, G] -> its prompts [P, k*G] (row c: channels c*G .. (c+1)*G - 1)."""
    return rows.transpose(0, 1).reshape(rows.shape[1], -1)


def prompt_rows(backbone: SwinTransformer, deep: bool) -> int:
    """Rows R of the [R, P, G] prompt tensor: every block's (deep) or the first block's (shallow)."""
    _, rows = prompt_grid(backbone)
    return sum(rows) if deep else rows[0]


class PromptableWindowAttention(WindowAttention):
    """timm's WindowAttention that also takes n tokens in front of each window's Wh*Ww tokens (N = n + Wh*Ww).

    The relative position bias and the (shifted-window) mask get zero rows and columns for them, so they
    attend to every token of their window and every token attends to them, with no position bias. With
    N = Wh*Ww the forward is timm's own. The prompted Swin re-classes each block's attention to this
    subclass: parameters, buffers and state_dict keys stay timm's.
    """

    _extra = 0  # prompt positions of the call in progress

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        extra = x.shape[1] - self.window_area
        if extra == 0:
            return super().forward(x, mask)
        if mask is not None:
            mask = F.pad(mask, (extra, 0, extra, 0))  # [nW, N, N]: zeros at the prompt rows and columns
        self._extra = extra
        try:
            return super().forward(x, mask)
        finally:
            del self._extra

    def _get_rel_pos_bias(self) -> torch.Tensor:
        bias = super()._get_rel_pos_bias()  # [1, nH, Wh*Ww, Wh*Ww]
        return F.pad(bias, (self._extra, 0, self._extra, 0)) if self._extra else bias


class PromptedSwin(PromptedViT):
    """PromptedViT's prompt sources, freezing, deploy and timm contract, on a SwinTransformer (see the module doc)."""

    # -- hooks ------------------------------------------------------------------------
    def _install_hooks(self) -> None:
        _, rows = prompt_grid(self.backbone)
        total, start, index = self.prompts.shape[0], 0, 0
        if total not in (rows[0], sum(rows)):
            raise NVPTError(f"Swin prompts need {rows[0]} rows (shallow) or {sum(rows)} (deep), got {total}")
        for s, stage in enumerate(self.backbone.layers):
            if s > 0:
                stage.downsample.register_forward_hook(self._merge_hook)
            for block in stage.blocks:
                own = slice(start, start + rows[index]) if start + rows[index] <= total else None
                start, index = start + rows[index], index + 1
                if type(block.attn) is WindowAttention:
                    block.attn.__class__ = PromptableWindowAttention
                elif not isinstance(block.attn, PromptableWindowAttention):
                    raise NVPTError(f"cannot prompt a Swin block whose attention is a {type(block.attn).__name__}")
                # partials of bound methods (not closures): copy.deepcopy(model) rebinds them to the copy
                block.register_forward_pre_hook(functools.partial(self._block_pre_hook, own))
                block.attn.register_forward_pre_hook(self._attn_pre_hook)
                block.attn.register_forward_hook(self._attn_hook)
                block.register_forward_hook(self._block_hook)
        self.backbone.norm.register_forward_hook(self._norm_hook)

    def _block_pre_hook(self, own: slice | None, block, args):
        """The block's prompts [B, P, C]: its own rows (inserted / replaced), else the ones carried in."""
        if not self._prompting():
            return None
        x = args[0]  # [B, H, W, C]
        state = self._active
        if own is not None:
            prompts = self._expand(join_rows(state["tokens"][own]), x.shape[0], x.dtype)
        else:
            prompts = state["carry"]
        state["prompts"], state["normed"] = prompts, block.norm1(prompts)
        return None

    def _attn_pre_hook(self, attn, args):
        """windows [B*nW, Wh*Ww, C] (timm's window_partition: image-major) -> [B*nW, P + Wh*Ww, C]."""
        if not self._prompting():
            return None
        windows, normed = args[0], self._active["normed"]
        per_image = windows.shape[0] // normed.shape[0]
        prompts = normed.to(windows.dtype).repeat_interleave(per_image, dim=0)  # row b*nW + w: image b's prompts
        return (torch.cat([prompts, windows], dim=1),) + tuple(args[1:])

    def _attn_hook(self, attn, args, output):
        """Keep the windows' token outputs for timm; the prompt outputs, averaged over an image's windows, aside."""
        if not self._prompting():
            return None
        batch, length = self._active["normed"].shape[:2]
        self._active["attended"] = output[:, :length].reshape(batch, -1, length, output.shape[-1]).mean(dim=1)
        return output[:, length:].contiguous()

    def _block_hook(self, block, args, output):
        """The block's residual and MLP on the prompts, as on every token: what the next block carries in."""
        if not self._prompting():
            return None
        state = self._active
        prompts = state["prompts"] + block.drop_path1(state.pop("attended"))
        state["carry"] = prompts + block.drop_path2(block.mlp(block.norm2(prompts)))
        return None

    def _merge_hook(self, merge, args, output):
        """Patch merging of the carried prompts: norm and reduction of [p, p, p, p] (4C -> 2C)."""
        if not self._prompting():
            return None
        carry = self._active["carry"]
        self._active["carry"] = merge.reduction(merge.norm(torch.cat([carry] * 4, dim=-1)))
        return None

    def _norm_hook(self, norm, args, output):
        """Final norm: [B, H, W, C] -> [B, 1, P + H*W, C], the normed prompt outputs first (pooled with the tokens)."""
        if not self._prompting():
            return None
        batch, dim = output.shape[0], output.shape[-1]
        prompts = norm.forward(self._active["carry"])  # .forward: not through this hook again
        tokens = torch.cat([prompts.to(output.dtype), output.reshape(batch, -1, dim)], dim=1)
        return tokens.unsqueeze(1)

    @contextmanager
    def _prompts_active(self):
        with super()._prompts_active():
            try:
                yield
            finally:
                for key in ("prompts", "normed", "attended", "carry"):  # no graph kept past the forward
                    self._active.pop(key, None)

    # -- prompts ----------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> timm's [B, h, w, D] map; with prompts [B, 1, P + h*w, D] (prompt outputs first),
        which timm's head pools over: prompts included, as in the VPT reference."""
        return super().forward_features(x)

    def prompt_tokens(self) -> torch.Tensor:
        """The [R, P, G] prompt tensor in eval mode (see the module doc; block_prompts splits it per block)."""
        if self.prompts is None:
            return torch.zeros(0, 0, prompt_grid(self.backbone)[0])
        return super().prompt_tokens()

    def block_prompts(self, tokens: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[P, D_b] for every prompted block, in forward order, from [R, P, G] tokens (default: prompt_tokens())."""
        tokens = self.prompt_tokens() if tokens is None else tokens
        _, rows = prompt_grid(self.backbone)
        out, start = [], 0
        for k in rows:
            if start + k > tokens.shape[0]:
                break
            out.append(join_rows(tokens[start:start + k]))
            start += k
        return out
