"""The interaction model: §6-layout embeddings -> MoE transformer (RMSNorm, RoPE, §6 mask) -> output-slot heads.

    python -c "from trainer.config import preset; from trainer.model import Model; print(Model(preset('tiny')))"

Shapes: B examples, N slots (context_microturns * slots_per_microturn), D model dim, Q patches per example.
The model predicts slot i from the hidden state at slot i - 1 (next-token) on OUT_TEXT and OUT_DMEL targets only.
Attention (§6): slot i attends to slots j <= i that are `attendable` (and always to itself, so no row is empty);
examples never mix (LayerNorm in the patch stem, not BatchNorm).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from schemas.dmel import DMEL_CHANNELS, DMEL_LEVELS, speech_frames
from schemas.layout import CHUNK, IN_DMEL, IN_TEXT, OUT_DMEL, OUT_TEXT, PATCH, PATCH_PX, SLOT_KINDS, SPEAK, TEXT_VOCAB
from trainer.config import TrainConfig
from trainer.heads import DmelHead, FlowHead, SpeakHead, TextHead
from trainer.moe import MoE

logger = logging.getLogger(__name__)


class HMLPStem(nn.Module):
    """Hierarchical MLP stem (Touvron et al. 2022) for 40x40 RGB patches: 4x4 -> 5x5 -> 2x2 non-overlapping
    linear stages with LayerNorm + GELU between them. Each patch is processed alone: (M, 3, 40, 40) uint8 -> (M, D)."""

    def __init__(self, hidden: int, dim: int) -> None:
        super().__init__()
        c1 = max(hidden // 4, 8)
        self.s1, self.n1 = nn.Linear(3 * 4 * 4, c1), nn.LayerNorm(c1)
        self.s2, self.n2 = nn.Linear(c1 * 5 * 5, hidden), nn.LayerNorm(hidden)
        self.s3 = nn.Linear(hidden * 2 * 2, dim)

    def forward(self, patches_M3HW: torch.Tensor) -> torch.Tensor:
        m = patches_M3HW.shape[0]
        assert patches_M3HW.shape[1:] == (3, PATCH_PX, PATCH_PX), patches_M3HW.shape
        x = patches_M3HW.to(self.s1.weight.dtype) / 255.0 - 0.5
        x = x.reshape(m, 3, 10, 4, 10, 4).permute(0, 2, 4, 1, 3, 5).reshape(m, 10, 10, 48)
        x = F.gelu(self.n1(self.s1(x)))  # (m, 10, 10, c1)
        x = x.reshape(m, 2, 5, 2, 5, -1).permute(0, 1, 3, 2, 4, 5).reshape(m, 2, 2, -1)
        x = F.gelu(self.n2(self.s2(x)))  # (m, 2, 2, hidden)
        return self.s3(x.reshape(m, -1))


def rope_tables(n: int, head_dim: int, base: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (N, head_dim / 2) fp32, positions 0..N-1."""
    inv = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    ang = torch.arange(n, device=device, dtype=torch.float32)[:, None] * inv[None]
    return ang.cos(), ang.sin()


def rope(x_BHND: torch.Tensor, cos_NH: torch.Tensor, sin_NH: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (half-split convention)."""
    hd = x_BHND.shape[-1]
    cos, sin = cos_NH.to(x_BHND.dtype), sin_NH.to(x_BHND.dtype)
    x1, x2 = x_BHND[..., : hd // 2], x_BHND[..., hd // 2 :]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim={dim} must split into {heads} heads of even size")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x_BND: torch.Tensor, bias_B1NN: torch.Tensor, rope_NH: tuple) -> torch.Tensor:
        b, n, d = x_BND.shape
        q, k, v = self.qkv(x_BND).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k = rope(q, *rope_NH), rope(k, *rope_NH)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias_B1NN)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        m = cfg.model
        self.attn_norm = nn.RMSNorm(m.dim, eps=m.norm_eps)
        self.attn = Attention(m.dim, m.heads)
        self.ffn_norm = nn.RMSNorm(m.dim, eps=m.norm_eps)
        self.moe = MoE(m.dim, m.ffn_dim, m.experts, m.top_k, impl=cfg.moe_impl)

    def forward(self, x_BND, bias_B1NN, rope_NH, active_BN) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x_BND = x_BND + self.attn(self.attn_norm(x_BND), bias_B1NN, rope_NH)
        d = x_BND.shape[-1]
        flat = x_BND.reshape(-1, d)
        idx_T = active_BN.reshape(-1).nonzero(as_tuple=True)[0]  # only active slots are routed (dropless)
        y_TD, stats = self.moe(self.ffn_norm(flat[idx_T]))
        flat = flat.index_add(0, idx_T, y_TD.to(flat.dtype))
        return flat.view_as(x_BND), stats


def active_slots(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Slots that go through the FFNs: attendable ones and those whose hidden state predicts a target. (B, N)."""
    active = batch["attendable"].clone()
    active[:, :-1] |= batch["target_text"][:, 1:] | batch["target_dmel"][:, 1:]
    return active


def flow_targets(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The continuous log-mel frames of the target OUT_DMEL slots, (T, 80) in (example, slot) order: the frames
    `h[:, :-1][target_dmel[:, 1:]]` predicts. batch["logmel"] is (B, C * 16, 80), the OUT_DMEL slots' rows only
    (trainer/data.py collate); the layout is the same for every example, so the columns come from example 0."""
    cols = (batch["kind"][0] == OUT_DMEL).nonzero(as_tuple=True)[0]
    return batch["logmel"][batch["target_dmel"][:, cols]]


def attention_mask(attendable_BN: torch.Tensor) -> torch.Tensor:
    """§6 mask, True = may attend: key j <= query i and (j attendable or j == i). (B, N) -> (B, 1, N, N)."""
    n = attendable_BN.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=attendable_BN.device).tril()
    eye = torch.eye(n, dtype=torch.bool, device=attendable_BN.device)
    return (causal[None] & (attendable_BN[:, None, :] | eye[None]))[:, None]


def speak_slots(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The SPEAK slots of real micro-turns, (B, N) bool: one speak decision each."""
    return (batch["kind"] == SPEAK) & batch["attendable"]


def speak_targets(batch: dict[str, torch.Tensor], horizon: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The speak head's slots and targets: the SPEAK slots of real micro-turns, (B, N) bool; for each of them in
    row-major order whether the model speaks in that micro-turn or in the `horizon` micro-turns after it (those
    inside the example), (M,) bool: any of their OUT_DMEL frames is speech (`schemas.dmel.speech_frames`); and
    whether the floor may change there, (M,) bool: the model was silent in the micro-turn before and the user is
    silent in this one, or the model spoke before and the user speaks now (the first micro-turn of an example has
    no before: it counts as silent)."""
    kind = batch["kind"]
    b, n = kind.shape
    per = n // max(int((kind[0] == CHUNK).sum()), 1)  # slots per micro-turn: the layout is static
    at_speak = speak_slots(batch)
    voiced = speech_frames(batch["dmel"])
    now = (voiced & (kind == OUT_DMEL)).view(b, n // per, per).any(-1)
    user = (voiced & (kind == IN_DMEL)).view(b, n // per, per).any(-1)
    before = torch.zeros_like(now)
    before[:, 1:] = now[:, :-1]
    speaks = now.clone()
    for h in range(1, horizon + 1):
        speaks[:, :-h] |= now[:, h:]
    real = at_speak.view(b, n // per, per).any(-1)
    return at_speak, speaks[real], (before == user)[real]


class Model(nn.Module):
    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.kind_emb = nn.Embedding(len(SLOT_KINDS), m.dim)
        self.dmel_emb = nn.Parameter(torch.randn(DMEL_CHANNELS * DMEL_LEVELS, m.dim) * 0.02)
        self.others_emb = nn.Parameter(torch.randn(DMEL_CHANNELS * DMEL_LEVELS, m.dim) * 0.02)
        self.text_emb = nn.Embedding(TEXT_VOCAB, m.dim)
        self.stem = HMLPStem(m.stem_dim, m.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(m.layers))
        self.norm = nn.RMSNorm(m.dim, eps=m.norm_eps)
        self.text_head, self.dmel_head, self.flow_head = TextHead(m.dim), DmelHead(m.dim), FlowHead(m.dim)
        for emb in (self.kind_emb, self.text_emb):
            nn.init.normal_(emb.weight, std=0.02)
        # made last, and only when used: a model without it draws the same initial weights as before it existed
        self.speak_head = SpeakHead(m.dim) if cfg.loss.speak_weight > 0 else None
        self.register_buffer("channel_offset", torch.arange(DMEL_CHANNELS) * DMEL_LEVELS, persistent=False)

    def _multi_hot(self, codes_BMC: torch.Tensor) -> torch.Tensor:
        """(B, M, 80) codes -> (B, M, 80 * 16) with one 1 per channel."""
        idx = codes_BMC.long() + self.channel_offset
        hot = torch.zeros(*idx.shape[:-1], DMEL_CHANNELS * DMEL_LEVELS, device=idx.device, dtype=self.dmel_emb.dtype)
        return hot.scatter_(-1, idx, 1.0)

    def embed(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        kind = batch["kind"].long()
        b, n = kind.shape
        x = self.kind_emb(kind)
        # dMel slots: sum over the 80 channels of a (channel, level) table = multi-hot (80 ones of 1280) @ table.
        # The layout is the same for every example, so the dMel columns come from example 0.
        cols = ((kind[0] == IN_DMEL) | (kind[0] == OUT_DMEL)).nonzero(as_tuple=True)[0]
        x[:, cols] = x[:, cols] + self._multi_hot(batch["dmel"][:, cols]) @ self.dmel_emb.to(x.dtype)
        if batch["has_others"].any():
            cols_in = (kind[0] == IN_DMEL).nonzero(as_tuple=True)[0]
            others = self._multi_hot(batch["others_dmel"][:, cols_in]) @ self.others_emb.to(x.dtype)
            x[:, cols_in] = x[:, cols_in] + others * batch["has_others"][:, None, None]
        is_text = ((kind == IN_TEXT) | (kind == OUT_TEXT)).unsqueeze(-1)
        x = x + self.text_emb(batch["text"].long()) * is_text
        valid_BQ = batch["patch_valid"]
        if valid_BQ.any():  # scatter stem outputs into the PATCH slots, in order
            emb_MD = self.stem(batch["patches"][valid_BQ])
            patch_pos = (kind == PATCH).nonzero(as_tuple=True)  # (b, n) pairs, row-major = patch order
            sel = valid_BQ.reshape(-1).nonzero(as_tuple=True)[0]
            x = x.index_put((patch_pos[0][sel], patch_pos[1][sel]), emb_MD.to(x.dtype), accumulate=True)
        return x

    def trunk(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
        """Final-norm hidden states of every slot, (B, N, D), and per-layer router statistics (a full-sequence
        pass; trainer/generate.py computes the same hidden states incrementally with a KV cache)."""
        active = active_slots(batch)
        x = self.embed(batch)
        allowed = attention_mask(batch["attendable"])  # as an additive float mask, converted once, not per layer
        allowed = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))
        stats = []
        m = self.cfg.model
        rope_NH = rope_tables(x.shape[1], m.dim // m.heads, m.rope_base, x.device)
        for block in self.blocks:
            x, s = block(x, allowed, rope_NH, active)
            stats.append(s)
        return self.norm(x), stats

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> dict:
        """Summed losses and target counts of one micro-batch, plus router statistics.

        Returns: text, dmel, flow, speak (summed losses, fp32 scalars; speak 0 without the speak head), n_text,
        n_dmel, n_speak (ints), aux, z (means over layers), load (layers, E) and entropy (mean over layers), detached.
        """
        t_text, t_dmel = batch["target_text"], batch["target_dmel"]
        pred_text, pred_dmel = t_text[:, 1:], t_dmel[:, 1:]  # hidden at i - 1 predicts slot i
        h, stats = self.trunk(batch)
        speak, n_speak = h.new_zeros((), dtype=torch.float32), 0
        if self.speak_head is not None:  # read at the SPEAK slot itself: it has heard the whole micro-turn
            lc = self.cfg.loss
            at_speak, speaks, may_change = speak_targets(batch, lc.speak_horizon)
            weight = 1.0 + (lc.speak_focus - 1.0) * may_change.float()
            speak, n_speak = self.speak_head(h[at_speak], speaks, weight), int(speaks.numel())
        h = h[:, :-1]
        text = self.text_head(h[pred_text], batch["text"][:, 1:][pred_text])
        dmel = self.dmel_head(h[pred_dmel], batch["dmel"][:, 1:][pred_dmel])
        lc = self.cfg.loss
        x1 = (flow_targets(batch).float() - lc.flow_center) / lc.flow_scale
        flow = self.flow_head(h[pred_dmel], x1, generator)
        return {
            "text": text,
            "dmel": dmel,
            "flow": flow,
            "speak": speak,
            "n_speak": n_speak,
            "n_text": int(pred_text.sum()),
            "n_dmel": int(pred_dmel.sum()),
            "n_active": int(active_slots(batch).sum()),
            "aux": torch.stack([s["aux"] for s in stats]).mean(),
            "z": torch.stack([s["z"] for s in stats]).mean(),
            "load": torch.stack([s["load_E"] for s in stats]),
            "entropy": torch.stack([s["entropy"] for s in stats]).mean(),
        }


def parameter_counts(model: Model) -> dict[str, int]:
    """Parameter counts: `total`; `experts` (routed expert weights); `embedding` (the kind, text and dMel lookup
    tables); `active` = total minus the (E - K) / E share of the expert weights not used by a token; and
    `active_non_embedding` = active minus the tables (the figure for 6 N FLOPs per token and MFU)."""
    m = model.cfg.model
    total = sum(p.numel() for p in model.parameters())
    experts = sum(b.moe.w1_EFD.numel() + b.moe.w2_EDF.numel() + b.moe.w3_EFD.numel() for b in model.blocks)
    tables = model.dmel_emb.numel() + model.others_emb.numel() + model.text_emb.weight.numel()
    tables += model.kind_emb.weight.numel()
    active = total - experts * (m.experts - m.top_k) // m.experts
    return {
        "total": total,
        "experts": experts,
        "embedding": tables,
        "active": active,
        "active_non_embedding": active - tables,
    }
