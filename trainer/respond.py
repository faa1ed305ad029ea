"""Run a checkpoint in real time: feed the user side one micro-turn at a time, generate the model side with a KV cache.

    microturn respond --checkpoint runs/tiny/checkpoint.pt --input demo-out/dataset --out responses --seed 0

Per micro-turn k (DESIGN.md §6 layout, schemas/layout.py): the user slots (CHUNK, 16 user dMel frames, the frame's
patches, the user's text bytes and END, SPEAK) go through the model in one pass; then the model's text bytes are
sampled one by one up to END (forced at the last text slot), then its 16 dMel frames one by one (80 channels of
16 levels, sampled per channel). Each slot attends only to the past: keys and values of every attendable slot are
kept per attention layer (MoE layers act per token and need no cache). The cache keeps the last
`context_microturns` micro-turns of the checkpoint's training examples (the longest span the model was trained to
attend over), so the cost of a micro-turn does not grow with the conversation. Positions are absolute slot indices
(RoPE depends only on their differences). A full-sequence forward pass on the same tokens gives the same logits
(tests/trainer/test_respond.py); the same seed gives the same output.

Outputs. Per conversation and perspective, the folder OUT/{conversation_key}_{perspective}/ gets:

- words.json: the generated words, a JSON list of {"text": str, "microturn": int, "start_s": float, "end_s": float};
  a word's time is the micro-turn whose text slots hold it (start_s = microturn * 0.2 s, end_s = start_s + 0.2 s,
  seconds from the conversation start), the placement the layout uses for model words;
- decisions.json: per micro-turn {"microturn", "start_s", "activity" (speech fraction 0..1 of the generated
  frames, trainer/vocode.py), "speak" (bool: activity > 0)};
- model.wav (generated dMel -> least-squares inverse mel + Griffin-Lim, 16 kHz mono PCM_16) and dialogue.wav
  (stereo: left user, right model).

And per conversation of a dataset, OUT/{conversation_key}.json, the response file `microturn eval proactive` reads
(`--responses OUT`): {"conversation_id": str (the bundle id as given), "perspective": str, "words": [{"text": str,
"start": float, "end": float}]}, the same words and times (seconds from the conversation start) as words.json. A
conversation with several perspectives gets the file of the first perspective in name order (a dataset written
with `model_speakers` in the bundle or `--perspectives first` has one). Full-Duplex-Bench clips get no such file.

The measured wall time per micro-turn (model work only, no audio synthesis) is printed as median and p95: real
time needs < 200 ms.

Inputs: a dataset directory or URL (its manifest.json reads with schemas.tables.read_manifest), a directory of
input bundles (run through the pipeline into a temporary dataset first), or a `microturn export fdbench` directory
(clips.jsonl): then each clip's input.wav is the user side and the model's audio is written as
OUT/<task path>/<clip>/output.wav, the file Full-Duplex-Bench scores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from schemas.dmel import DMEL_CHANNELS, DMEL_LEVELS, FRAMES_PER_MICROTURN
from schemas.layout import OUT_DMEL, OUT_TEXT, PATCH, SPEAK, TEXT_END, TEXT_PAD, microturn_slots, pack
from schemas.units import MICROTURN_S, SAMPLE_RATE_HZ, SAMPLES_PER_MICROTURN
from trainer.config import TrainConfig
from trainer.model import Model, rope

logger = logging.getLogger(__name__)


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
    the wall time of each micro-turn (seconds), and, when traced, the logits of every generated slot."""

    text: np.ndarray
    dmel: np.ndarray
    seconds: list[float]
    trace: list[tuple[int, torch.Tensor]] = dataclasses.field(default_factory=list)

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
                        "start_s": round(k * MICROTURN_S, 3),
                        "end_s": round((k + 1) * MICROTURN_S, 3),
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
) -> Generated:
    """Generate the model side of `conv` micro-turn by micro-turn (see the module docstring).

    Args:
        window: micro-turns kept in the KV cache, the current one included (default: the checkpoint's
            context_microturns).
        trace: keep the logits of every generated slot (absolute slot index, logits) for tests.
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
    traced: list[tuple[int, torch.Tensor]] = []
    pending: tuple[int, np.ndarray] | None = None  # last dMel frame of the previous micro-turn, fed with the next input

    def run(
        idx: list[int], store: list[bool], text: dict[int, int] | None = None, dmel: dict[int, np.ndarray] | None = None
    ) -> torch.Tensor:
        a = np.asarray(idx, dtype=np.int64)
        batch = _slot_batch(packed, a, per, q, text, dmel)
        return streamer.feed(batch, torch.from_numpy(a), torch.from_numpy(a // per), torch.tensor(store))

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
        # text: slot j predicted from the hidden state of the slot before it
        for j in range(s):
            slot = base + text_at + j
            logits = model.text_head.proj(h)
            if trace:
                traced.append((slot, logits.float().cpu()))
            tok = (
                TEXT_END
                if j == s - 1
                else int(sample_logits(logits, temperature=temperature, top_k=top_k, generator=gen))
            )
            out_text[k, j] = tok
            if tok == TEXT_END:
                last = base + text_at + s - 1
                if j < s - 1:  # the last text slot (PAD) predicts the first frame; it is never attended to
                    h = run([slot, last], [True, False], text={slot: TEXT_END, last: TEXT_PAD})[-1]
                else:
                    h = run([slot], [True], text={slot: TEXT_END})[-1]
                break
            h = run([slot], [True], text={slot: tok})[-1]
        for f in range(FRAMES_PER_MICROTURN):
            slot = base + dmel_at + f
            logits = model.dmel_head.proj(h).view(DMEL_CHANNELS, DMEL_LEVELS)
            if trace:
                traced.append((slot, logits.float().cpu()))
            codes = sample_logits(logits, temperature=temperature, top_k=top_k, generator=gen).numpy()
            out_dmel[k, f] = codes.astype(np.uint8)
            if f < FRAMES_PER_MICROTURN - 1:
                h = run([slot], [True], dmel={slot: out_dmel[k, f]})[-1]
            else:
                pending = (slot, out_dmel[k, f])
        seconds.append(time.perf_counter() - t0)
    return Generated(text=out_text, dmel=out_dmel, seconds=seconds, trace=traced)


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


# ---------------------------------------------------------------- inputs


def conversations_from_dataset(dataset: str, *, keep: set[str] | None = None, limit: int = 0) -> list[Conversation]:
    """The dataset's conversations (one per perspective), windows joined in order. `keep`: conversation ids."""
    from schemas.reader import iter_samples

    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for sample in iter_samples(dataset):
        meta = sample["meta.json"]
        if keep is not None and meta["conversation_id"] not in keep:
            continue
        groups[(meta["conversation_key"], meta["perspective"])].append(sample)
    out = []
    for (ckey, persp), samples in sorted(groups.items()):
        conv = join_windows(f"{ckey}_{persp}", samples)
        meta = conv.sample["meta.json"]
        conv.conversation_id, conv.conversation_key, conv.perspective = meta["conversation_id"], ckey, persp
        out.append(conv)
        if limit and len(out) >= limit:
            break
    return out


def join_windows(name: str, samples: Sequence[dict]) -> Conversation:
    """Join a conversation's windows (one perspective) into one `Conversation` (real micro-turns only)."""
    samples = sorted(samples, key=lambda s: s["meta.json"]["window"])
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    words: list[dict] = []
    frames, frame_valid = [], []
    for s in samples:
        meta = s["meta.json"]
        n, first = meta["num_microturns"], meta["start_microturn"]
        for member in (
            "input.dmel.npy",
            "output.dmel.npy",
            "others.dmel.npy",
            "activity.npy",
            "labels.npy",
            "floor.npy",
        ):
            if member in s:
                parts[member].append(np.asarray(s[member])[:n])
        if "input.flac" in s:
            parts["input.flac"].append(np.asarray(s["input.flac"], np.float32)[: n * SAMPLES_PER_MICROTURN])
        for w in s.get("words.json", []):
            w = dict(w)
            w["microturn"] = int(w["microturn"]) + first
            w["start_s"] = float(w["start_s"]) + first * MICROTURN_S
            w["end_s"] = float(w.get("end_s", w["start_s"])) + first * MICROTURN_S
            words.append(w)
        if "frames" in s:
            frames.append(np.asarray(s["frames"])[:n])
            frame_valid.append(np.asarray(s["frame_mask"], bool)[:n])
    sample: dict[str, Any] = {m: np.concatenate(v) for m, v in parts.items() if m != "input.flac"}
    sample["mask.npy"] = np.ones(len(sample["input.dmel.npy"]), np.uint8)
    sample["words.json"] = words
    sample["meta.json"] = samples[0]["meta.json"]
    pcm = np.concatenate(parts["input.flac"]) if parts.get("input.flac") else None
    return Conversation(
        name=name,
        sample=sample,
        user_pcm=pcm,
        frames=np.concatenate(frames) if frames else None,
        frame_valid=np.concatenate(frame_valid) if frame_valid else None,
    )


def conversations_from_clips(clips_dir: str, *, limit: int = 0) -> list[Conversation]:
    """Exported Full-Duplex-Bench clips (`microturn export fdbench`): each folder with an input.wav is one
    conversation whose user side is that audio (dMel as the pipeline computes it) and whose user words come from
    transcription.json (placed in the micro-turn holding their end, as the pipeline places user words)."""
    import soundfile as sf

    from pipeline.features import dmel_codes

    out = []
    for root, _dirs, files in sorted(os.walk(clips_dir)):
        if "input.wav" not in files:
            continue
        pcm, sr = sf.read(os.path.join(root, "input.wav"), dtype="float32")
        if sr != SAMPLE_RATE_HZ:
            raise ValueError(f"{root}/input.wav is {sr} Hz; expected {SAMPLE_RATE_HZ}")
        pcm = pcm if pcm.ndim == 1 else pcm.mean(-1)
        codes = dmel_codes(pcm).reshape(-1, FRAMES_PER_MICROTURN, DMEL_CHANNELS)
        k = len(codes)
        words = []
        tpath = os.path.join(root, "transcription.json")
        if os.path.exists(tpath):
            with open(tpath, encoding="utf-8") as f:
                for part in json.load(f):
                    for item in part.get("item", []):
                        a, b = (float(x) for x in item["timestamp"])
                        words.append(
                            {
                                "text": item["text"],
                                "stream": "input",
                                "start_s": a,
                                "end_s": b,
                                "microturn": min(int(b / MICROTURN_S), k - 1),
                            }
                        )
        rel = os.path.relpath(root, clips_dir)
        sample = {
            "input.dmel.npy": codes,
            "output.dmel.npy": np.zeros_like(codes),
            "mask.npy": np.ones(k, np.uint8),
            "words.json": words,
        }
        out.append(Conversation(name=rel.replace(os.sep, "__"), sample=sample, user_pcm=pcm, fdbench_out=rel))
        if limit and len(out) >= limit:
            break
    return out


def is_dataset(path: str) -> bool:
    """Whether `path` (a directory or URL) is a written dataset: its manifest reads."""
    from schemas.tables import read_manifest

    try:
        read_manifest(path)
    except (OSError, ValueError):
        return False
    return True


def load_inputs(path: str, *, limit: int = 0, keep: set[str] | None = None) -> list[Conversation]:
    """Conversations from a dataset, an fdbench export, or a bundles directory (run through the pipeline first)."""
    if is_dataset(path):
        return conversations_from_dataset(path, keep=keep, limit=limit)
    if os.path.exists(os.path.join(path, "clips.jsonl")):
        return conversations_from_clips(path, limit=limit)
    from pipeline.job import run

    tmp = tempfile.mkdtemp(prefix="microturn-respond-")
    logger.info("%s is not a dataset: running the pipeline into %s", path, tmp)
    run(["--input", path, "--output", os.path.join(tmp, "dataset"), "--keep_audio"])
    return conversations_from_dataset(os.path.join(tmp, "dataset"), keep=keep, limit=limit)


# ---------------------------------------------------------------- outputs


def load_model(checkpoint_path: str, device: str = "cpu") -> Model:
    """A Model with the checkpoint's config and weights, in eval mode."""
    from trainer import checkpoint

    state = checkpoint.load(checkpoint_path, map_location=device)
    model = Model(TrainConfig.from_dict(state["config"])).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


def write_outputs(conv: Conversation, gen: Generated, out_dir: str, *, seed: int = 0) -> dict[str, Any]:
    """Write words.json, decisions.json, model.wav, dialogue.wav (or output.wav for an fdbench clip), and for a
    dataset conversation out_dir/{conversation_key}.json unless an earlier perspective wrote it (module docstring)."""
    import soundfile as sf

    from trainer.vocode import dmel_to_audio, frame_activity, stereo

    act = frame_activity(gen.dmel)
    model_pcm = dmel_to_audio(gen.dmel, seed=seed)
    user_pcm = conv.user_pcm if conv.user_pcm is not None else dmel_to_audio(conv.sample["input.dmel.npy"], seed=seed)
    if conv.fdbench_out is not None:
        folder = os.path.join(out_dir, conv.fdbench_out)
        os.makedirs(folder, exist_ok=True)
        sf.write(os.path.join(folder, "output.wav"), model_pcm[: len(user_pcm)], SAMPLE_RATE_HZ, subtype="PCM_16")
    else:
        folder = os.path.join(out_dir, conv.name)
        os.makedirs(folder, exist_ok=True)
        sf.write(os.path.join(folder, "model.wav"), model_pcm, SAMPLE_RATE_HZ, subtype="PCM_16")
    sf.write(os.path.join(folder, "dialogue.wav"), stereo(user_pcm, model_pcm), SAMPLE_RATE_HZ, subtype="PCM_16")
    with open(os.path.join(folder, "words.json"), "w", encoding="utf-8") as f:
        json.dump(gen.words(), f, indent=1, ensure_ascii=False)
    decisions = [
        {"microturn": k, "start_s": round(k * MICROTURN_S, 3), "activity": round(float(a), 4), "speak": bool(a > 0)}
        for k, a in enumerate(act)
    ]
    with open(os.path.join(folder, "decisions.json"), "w", encoding="utf-8") as f:
        json.dump(decisions, f, indent=1)
    if conv.conversation_key is not None:
        write_response_file(conv, gen, out_dir)
    return {"folder": folder, "words": len(gen.words()), "speak_share": float((act > 0).mean()) if len(act) else 0.0}


def write_response_file(conv: Conversation, gen: Generated, out_dir: str) -> str | None:
    """Write out_dir/{conversation_key}.json for `microturn eval proactive` (module docstring) unless it holds
    another perspective of the conversation already; returns its path, or None when left as it was."""
    path = os.path.join(out_dir, f"{conv.conversation_key}.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f).get("perspective")
        if earlier is not None and earlier != conv.perspective and earlier < str(conv.perspective):
            return None
    obj = {"conversation_id": conv.conversation_id, "perspective": conv.perspective, "words": gen.timed_words()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
    return path


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="microturn respond",
        description="Run a checkpoint micro-turn by micro-turn "
        "over conversations and write its words, speak/silent decisions and audio.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt written by `microturn train`")
    p.add_argument(
        "--input", required=True, help="dataset directory, bundles directory, or `microturn export fdbench` directory"
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = greedy (default 1)")
    p.add_argument("--top_k", type=int, default=0, help="sample among the k most likely classes; 0 = all")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (conversation i uses seed + i)")
    p.add_argument("--max_conversations", type=int, default=0, help="stop after this many (default 0 = all)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the ops are small)")
    return p


def respond_main(argv: Sequence[str]) -> int:
    """`microturn respond`: generate and write the model side of every input conversation; returns 0."""
    args = build_parser().parse_args(list(argv))
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint, args.device)
    convs = load_inputs(args.input, limit=args.max_conversations)
    if not convs:
        print(f"microturn respond: no conversations in {args.input}")
        return 2
    os.makedirs(args.out, exist_ok=True)
    all_seconds: list[float] = []
    for conv, gen in iter_generated(model, convs, temperature=args.temperature, top_k=args.top_k, seed=args.seed):
        info = write_outputs(conv, gen, args.out, seed=args.seed)
        all_seconds += gen.seconds
        med, p95 = timing_summary(gen.seconds)
        print(
            f"{conv.name}: {conv.microturns} micro-turns, {info['words']} words, speaks in "
            f"{info['speak_share']:.0%} of micro-turns, {med:.1f} ms median -> {info['folder']}"
        )
    med, p95 = timing_summary(all_seconds)
    verdict = "real time" if p95 < 200 else "NOT real time"
    print(
        f"wall time per micro-turn on {args.device} ({torch.get_num_threads()} threads): median {med:.1f} ms, "
        f"p95 {p95:.1f} ms over {len(all_seconds)} micro-turns ({verdict}: a micro-turn is 200 ms)"
    )
    return 0
