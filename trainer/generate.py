"""Streaming generation: feed the user side one micro-turn at a time, generate the model side with a KV cache.

    python -m pytest -q tests/trainer/test_generate.py

Per micro-turn k (DESIGN.md §6 layout, schemas/layout.py): the user slots (CHUNK, 16 user dMel frames, the frame's
patches, the user's text bytes and END, SPEAK) go through the model in one pass; then the model's text bytes are
sampled one by one up to END (forced at the last text slot), then its 16 dMel frames one by one (80 channels of
16 levels, sampled per channel). Each slot attends only to the past: keys and values of every attendable slot are
kept per attention layer (MoE layers act per token and need no cache). The cache keeps the last
`context_microturns` micro-turns of the checkpoint's training examples (the longest span the model was trained to
attend over), so the cost of a micro-turn does not grow with the conversation. Positions are absolute slot indices
(RoPE depends only on their differences). A full-sequence forward pass on the same tokens gives the same logits
(tests/trainer/test_respond.py); the same seed gives the same output.

With a speak head (trainer/heads.py SpeakHead, `LossConfig.speak_weight > 0`) the model decides at each
micro-turn's SPEAK slot whether it speaks: below `speak_threshold` its text is END and its 16 frames are digital
silence (`schemas.dmel.SILENCE_CODE`), fed back like sampled ones; otherwise text and frames are sampled as above.
The probability of every micro-turn is kept in `Generated.speak_prob`.

`evals/respond.py` runs this over conversations and writes what it generated.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from schemas.dmel import DMEL_CHANNELS, DMEL_LEVELS, FRAMES_PER_MICROTURN, SILENCE_CODE
from schemas.layout import OUT_DMEL, OUT_TEXT, PATCH, SPEAK, TEXT_END, TEXT_PAD, microturn_slots, pack
from schemas.units import microturn_start_s
from trainer.config import TrainConfig
from trainer.model import Model, rope


@dataclasses.dataclass
class Conversation:
    """One conversation from one perspective, all micro-turns: a sample dict as `schemas.layout.pack` reads it
    (input/output/others dMel (K, 16, 80), mask (K,), words with conversation micro-turns), the user's PCM when
    known, and where to write the model's audio for Full-Duplex-Bench clips."""

    name: str
    sample: dict[str, Any]
    user_pcm: np.ndarray | None = None
    frames: np.ndarray | None = None
    frame_valid: np.ndarray | None = None
    fdbench_out: str | None = None  # relative folder of an exported clip
    conversation_id: str | None = None  # the bundle id (dataset conversations only)
    conversation_key: str | None = None  # its key-safe form, the name of the response file
    perspective: str | None = None

    @property
    def microturns(self) -> int:
        return len(self.sample["mask.npy"])


@dataclasses.dataclass
class Generated:
    """The model side of a conversation: text tokens (K, S) int (bytes, END, PAD), dMel codes (K, 16, 80) uint8,
    the wall time of each micro-turn (seconds), when traced the logits of every generated slot, and with a speak
    head its probability of speaking in each micro-turn (K,) float32 (NaN without one)."""

    text: np.ndarray
    dmel: np.ndarray
    seconds: list[float]
    trace: list[tuple[int, torch.Tensor]] = dataclasses.field(default_factory=list)
    speak_prob: np.ndarray | None = None

    def words(self) -> list[dict[str, Any]]:
        """Generated words: {text, microturn, start_s, end_s}; times are the micro-turn's bounds (seconds)."""
        out = []
        for k, row in enumerate(self.text):
            data = bytes(int(t) for t in row if t < 256)
            for w in data.decode("utf-8", errors="replace").split():
                out.append(
                    {
                        "text": w,
                        "microturn": k,
                        "start_s": round(microturn_start_s(k), 3),
                        "end_s": round(microturn_start_s(k + 1), 3),
                    }
                )
        return out

    def timed_words(self) -> list[dict[str, Any]]:
        """The words as `microturn eval proactive` reads them: {text, start, end} (seconds)."""
        return [{"text": w["text"], "start": w["start_s"], "end": w["end_s"]} for w in self.words()]


def sample_logits(logits: torch.Tensor, *, temperature: float, top_k: int, generator: torch.Generator) -> torch.Tensor:
    """Sample one class per row of (..., C) logits (CPU); temperature <= 0 takes the argmax. Deterministic for the
    generator's state: one multinomial draw per call."""
    logits = logits.detach().float().cpu()
    if temperature <= 0:
        return logits.argmax(-1)
    scaled = logits / temperature
    if 0 < top_k < scaled.shape[-1]:
        kth = scaled.topk(top_k, dim=-1).values[..., -1:]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    probs = scaled.softmax(-1).reshape(-1, scaled.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1])


class KVCache:
    """Keys and values of the attendable slots so far, per layer, (1, H, n, head_dim), and each key's micro-turn."""

    def __init__(self, layers: int) -> None:
        self.k: list[torch.Tensor | None] = [None] * layers
        self.v: list[torch.Tensor | None] = [None] * layers
        self.microturn = torch.zeros(0, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.microturn)

    def evict_before(self, microturn: int) -> None:
        """Drop the keys of micro-turns < `microturn`."""
        keep = int((self.microturn < microturn).sum())  # keys are in micro-turn order
        if keep:
            self.microturn = self.microturn[keep:]
            self.k = [None if k is None else k[:, :, keep:] for k in self.k]
            self.v = [None if v is None else v[:, :, keep:] for v in self.v]


class Streamer:
    """Incremental forward passes of a `Model` over slots given one chunk at a time (see the module docstring)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        m = model.cfg.model
        self.heads, self.head_dim = m.heads, m.dim // m.heads
        self.inv_freq = m.rope_base ** (-torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim)
        self.cache = KVCache(len(model.blocks))

    def _rope(self, positions: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        ang = positions.float()[:, None] * self.inv_freq[None]  # as trainer.model.rope_tables
        return ang.cos().to(device), ang.sin().to(device)

    @torch.no_grad()
    def feed(
        self, batch: dict[str, torch.Tensor], positions: torch.Tensor, microturns: torch.Tensor, store: torch.Tensor
    ) -> torch.Tensor:
        """Run T new slots (a one-example batch as `Model.embed` reads it, in slot order) through the model.

        Args:
            batch: kind, dmel, others_dmel, text (1, T, ...), has_others (1,), patches/patch_valid (1, Q, ...).
            positions: (T,) absolute slot indices; microturns: (T,) their micro-turns.
            store: (T,) bool, whether each slot's keys stay in the cache (attendable slots); slots that are not
                stored must come last (nothing later in the chunk may attend to them).
        Returns:
            (T, D) final-norm hidden states.
        """
        model = self.model
        dev = next(model.parameters()).device
        x = model.embed({k: v.to(dev) for k, v in batch.items()})[0]  # (T, D)
        t = x.shape[0]
        cos, sin = self._rope(positions, dev)
        n_old = len(self.cache)
        allowed = torch.ones(t, n_old + t, dtype=torch.bool, device=dev)
        allowed[:, n_old:] = torch.ones(t, t, dtype=torch.bool, device=dev).tril()
        keep = int(store.sum())
        for i, block in enumerate(model.blocks):
            attn = block.attn
            q, k, v = attn.qkv(block.attn_norm(x)).view(t, 3, self.heads, self.head_dim).permute(1, 2, 0, 3)
            q, k = rope(q[None], cos, sin), rope(k[None], cos, sin)
            v = v[None]
            if self.cache.k[i] is not None:
                k_all, v_all = torch.cat([self.cache.k[i], k], 2), torch.cat([self.cache.v[i], v], 2)
            else:
                k_all, v_all = k, v
            y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=allowed)
            x = x + attn.out(y[0].transpose(0, 1).reshape(t, -1))
            y_TD, _ = block.moe(block.ffn_norm(x))
            x = x + y_TD.to(x.dtype)
            self.cache.k[i], self.cache.v[i] = k_all[:, :, : n_old + keep], v_all[:, :, : n_old + keep]
        self.cache.microturn = torch.cat([self.cache.microturn, microturns[:keep].cpu().long()])
        return model.norm(x)


def _slot_batch(
    packed: Any,
    idx: np.ndarray,
    per: int,
    q: int,
    override_text: dict[int, int] | None = None,
    override_dmel: dict[int, np.ndarray] | None = None,
) -> dict[str, torch.Tensor]:
    """The `Model.embed` inputs of packed slots `idx` (absolute indices), patches of the PATCH slots among them."""
    kind = packed.kind[idx]
    text = packed.text[idx].astype(np.int64)
    dmel = packed.dmel[idx].copy()
    for j, i in enumerate(idx):
        if override_text and int(i) in override_text:
            text[j] = override_text[int(i)]
        if override_dmel and int(i) in override_dmel:
            dmel[j] = override_dmel[int(i)]
    patch_idx = [
        (int(i) // per) * q + int(np.sum(packed.kind[(int(i) // per) * per : int(i)] == PATCH))
        for i in idx
        if packed.kind[i] == PATCH
    ]
    patches = packed.patches[patch_idx] if patch_idx else np.zeros((0, 3, 40, 40), np.uint8)
    return {
        "kind": torch.from_numpy(kind.astype(np.int64))[None],
        "dmel": torch.from_numpy(dmel)[None],
        "others_dmel": torch.from_numpy(packed.others_dmel[idx])[None],
        "has_others": torch.tensor([packed.has_others]),
        "text": torch.from_numpy(text)[None],
        "patches": torch.from_numpy(np.ascontiguousarray(patches))[None],
        "patch_valid": torch.ones(1, len(patch_idx), dtype=torch.bool),
    }


def pack_conversation(conv: Conversation, cfg: TrainConfig) -> Any:
    """The whole conversation in the §6 layout (the output side as the data has it; `generate` replaces it)."""
    return pack(
        conv.sample, cfg.data.layout, first=0, count=conv.microturns, frames=conv.frames, frame_valid=conv.frame_valid
    )


@torch.no_grad()
def generate(
    model: Model,
    conv: Conversation,
    *,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    window: int | None = None,
    trace: bool = False,
    speak_threshold: float = 0.5,
    stop_threshold: float | None = None,
) -> Generated:
    """Generate the model side of `conv` micro-turn by micro-turn (see the module docstring).

    Args:
        window: micro-turns kept in the KV cache, the current one included (default: the checkpoint's
            context_microturns).
        trace: keep the logits of every generated slot (absolute slot index, logits) for tests.
        speak_threshold: with a speak head, the probability of speaking below which the micro-turn is silent.
        stop_threshold: the same, in a micro-turn that follows one the model spoke in (hysteresis: below
            `speak_threshold`, the model that talks keeps talking through dips that would not start it; above, it
            stops more readily); None: `speak_threshold` throughout.
    """
    model.eval()
    cfg = model.cfg
    spec = cfg.data.layout
    window = window or cfg.data.context_microturns
    packed = pack_conversation(conv, cfg)
    slots = microturn_slots(spec)
    per, q, s = len(slots), spec.frame_patches, spec.text_slots
    speak_at = int(np.flatnonzero(slots == SPEAK)[0])
    text_at = int(np.flatnonzero(slots == OUT_TEXT)[0])
    dmel_at = int(np.flatnonzero(slots == OUT_DMEL)[0])
    gen = torch.Generator().manual_seed(seed)
    streamer = Streamer(model)
    k_total = conv.microturns
    out_text = np.full((k_total, s), TEXT_PAD, dtype=np.int16)
    out_dmel = np.zeros((k_total, FRAMES_PER_MICROTURN, DMEL_CHANNELS), dtype=np.uint8)
    seconds: list[float] = []
    speak_prob = np.full(k_total, np.nan, dtype=np.float32)
    traced: list[tuple[int, torch.Tensor]] = []
    pending: tuple[int, np.ndarray] | None = None  # last dMel frame of the previous micro-turn, fed with the next input
    kept = traced if trace else None

    def sample(logits: torch.Tensor) -> torch.Tensor:
        return sample_logits(logits, temperature=temperature, top_k=top_k, generator=gen)

    def run(
        idx: list[int], store: list[bool], text: dict[int, int] | None = None, dmel: dict[int, np.ndarray] | None = None
    ) -> torch.Tensor:
        a = np.asarray(idx, dtype=np.int64)
        batch = _slot_batch(packed, a, per, q, text, dmel)
        return streamer.feed(batch, torch.from_numpy(a), torch.from_numpy(a // per), torch.tensor(store))

    spoke = False  # did the model speak in the previous micro-turn?
    for k in range(k_total):
        t0 = time.perf_counter()
        streamer.cache.evict_before(k - window + 1)
        base = k * per
        idx = [base + j for j in range(speak_at + 1) if packed.attendable[base + j]]
        over_dmel: dict[int, np.ndarray] = {}
        if pending is not None and k - 1 >= k - window + 1:
            idx, over_dmel = [pending[0], *idx], {pending[0]: pending[1]}
        pending = None
        h = run(idx, [True] * len(idx), dmel=over_dmel)[-1]
        if model.speak_head is not None:
            speak_prob[k] = float(torch.sigmoid(model.speak_head.logits(h[None]))[0])
        threshold = stop_threshold if spoke and stop_threshold is not None else speak_threshold
        spoke = not speak_prob[k] < threshold  # True when NaN (no head)
        if not spoke:
            pending = _silent_microturn(run, first_text=base + text_at, first_dmel=base + dmel_at)
            out_text[k, 0] = TEXT_END
            out_dmel[k] = SILENCE_CODE
        else:
            h = _text_slots(model, run, h, first=base + text_at, out=out_text[k], sample=sample, traced=kept)
            pending = _dmel_frames(model, run, h, first=base + dmel_at, out=out_dmel[k], sample=sample, traced=kept)
        seconds.append(time.perf_counter() - t0)
    return Generated(text=out_text, dmel=out_dmel, seconds=seconds, trace=traced, speak_prob=speak_prob)


Feed = Callable[..., torch.Tensor]
"""Feeds slots to the streamer: (absolute slot indices, store in the KV cache?, text overrides, dMel overrides) ->
hidden states (n, D) of those slots."""


def _text_slots(
    model: Model,
    feed: Feed,
    h: torch.Tensor,
    *,
    first: int,
    out: np.ndarray,
    sample: Callable[[torch.Tensor], torch.Tensor],
    traced: list[tuple[int, torch.Tensor]] | None,
) -> torch.Tensor:
    """Sample one micro-turn's text slots into `out` (S,): slot j is predicted from the hidden state `h` of the slot
    before it; TEXT_END (forced in the last slot) ends the text. Returns the hidden state that predicts the first
    dMel frame."""
    s = len(out)
    for j in range(s):
        slot = first + j
        logits = model.text_head.proj(h)
        if traced is not None:
            traced.append((slot, logits.float().cpu()))
        tok = TEXT_END if j == s - 1 else int(sample(logits))
        out[j] = tok
        if tok == TEXT_END:
            last = first + s - 1
            if j < s - 1:  # the last text slot (PAD) predicts the first frame; it is never attended to
                return feed([slot, last], [True, False], text={slot: TEXT_END, last: TEXT_PAD})[-1]
            return feed([slot], [True], text={slot: TEXT_END})[-1]
        h = feed([slot], [True], text={slot: tok})[-1]
    return h  # no text slots


def _silent_microturn(feed: Feed, *, first_text: int, first_dmel: int) -> tuple[int, np.ndarray]:
    """Feed a silent model micro-turn (text END, then frames of digital silence) in one pass; returns the last
    frame's (slot, codes), fed with the next micro-turn's input as `_dmel_frames` does."""
    silence = np.full(DMEL_CHANNELS, SILENCE_CODE, dtype=np.uint8)
    frames = list(range(first_dmel, first_dmel + FRAMES_PER_MICROTURN - 1))
    # the PAD text slots are not attendable and nothing is predicted here, so they need no pass
    feed(
        [first_text, *frames],
        [True] * (1 + len(frames)),
        text={first_text: TEXT_END},
        dmel=dict.fromkeys(frames, silence),
    )
    return first_dmel + FRAMES_PER_MICROTURN - 1, silence


def _dmel_frames(
    model: Model,
    feed: Feed,
    h: torch.Tensor,
    *,
    first: int,
    out: np.ndarray,
    sample: Callable[[torch.Tensor], torch.Tensor],
    traced: list[tuple[int, torch.Tensor]] | None,
) -> tuple[int, np.ndarray]:
    """Sample one micro-turn's 16 dMel frames into `out` (16, 80), each fed back to predict the next; returns the
    last frame's (slot, codes), fed with the next micro-turn's input."""
    for f in range(FRAMES_PER_MICROTURN):
        slot = first + f
        logits = model.dmel_head.proj(h).view(DMEL_CHANNELS, DMEL_LEVELS)
        if traced is not None:
            traced.append((slot, logits.float().cpu()))
        out[f] = sample(logits).numpy().astype(np.uint8)
        if f < FRAMES_PER_MICROTURN - 1:
            h = feed([slot], [True], dmel={slot: out[f]})[-1]
    return first + FRAMES_PER_MICROTURN - 1, out[FRAMES_PER_MICROTURN - 1]


def full_sequence(model: Model, conv: Conversation, gen: Generated) -> dict[str, torch.Tensor]:
    """The conversation with the generated model side as one §6 batch (for a full forward pass, e.g. `Model.trunk`)."""
    from trainer.data import collate

    spec = model.cfg.data.layout
    packed = pack_conversation(conv, model.cfg)
    slots = microturn_slots(spec)
    per = len(slots)
    k_total = conv.microturns
    text = packed.text.reshape(k_total, per).copy()
    dmel = packed.dmel.reshape(k_total, per, DMEL_CHANNELS).copy()
    text[:, slots == OUT_TEXT] = gen.text
    dmel[:, slots == OUT_DMEL] = gen.dmel
    attendable = packed.attendable.reshape(k_total, per).copy()
    attendable[:, slots == OUT_TEXT] = gen.text != TEXT_PAD
    attendable[:, slots == OUT_DMEL] = True
    packed = dataclasses.replace(
        packed,
        text=text.reshape(-1),
        dmel=dmel.reshape(-1, DMEL_CHANNELS),
        attendable=attendable.reshape(-1),
        target_text=(attendable & (slots == OUT_TEXT)[None]).reshape(-1),
        target_dmel=(attendable & (slots == OUT_DMEL)[None]).reshape(-1),
    )
    return collate([packed])


def timing_summary(seconds: Sequence[float]) -> tuple[float, float]:
    """(median, p95) in milliseconds."""
    a = np.asarray(seconds, dtype=np.float64) * 1000.0
    return (float(np.median(a)), float(np.percentile(a, 95))) if a.size else (math.nan, math.nan)


def iter_generated(
    model: Model, convs: Sequence[Conversation], **kwargs: Any
) -> Iterator[tuple[Conversation, Generated]]:
    for i, conv in enumerate(convs):
        yield (
            conv,
            generate(
                model, conv, seed=int(kwargs.get("seed", 0)) + i, **{k: v for k, v in kwargs.items() if k != "seed"}
            ),
        )
