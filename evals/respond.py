"""Run a checkpoint over conversations micro-turn by micro-turn (trainer/generate.py) and write what it generated.

    microturn respond --checkpoint runs/tiny/checkpoint.pt --input demo-out/dataset --out responses --seed 0

Outputs. Per conversation and perspective, the folder OUT/{conversation_key}_{perspective}/ gets:

- words.json: the generated words, a JSON list of {"text": str, "microturn": int, "start_s": float, "end_s": float};
  a word's time is the micro-turn whose text slots hold it (start_s = microturn * 0.2 s, end_s = start_s + 0.2 s,
  seconds from the conversation start), the placement the layout uses for model words;
- decisions.json: per micro-turn {"microturn", "start_s", "activity" (speech fraction 0..1 of the generated
  frames, evals/vocode.py), "speak" (bool: activity > 0)};
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

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN
from schemas.paths import confined_join, safe_name
from schemas.units import SAMPLE_RATE_HZ, microturn_of_seconds, microturn_start_s
from trainer.generate import Conversation, Generated

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- inputs


def conversations_from_dataset(dataset: str, *, keep: set[str] | None = None, limit: int = 0) -> list[Conversation]:
    """The dataset's conversations (one per perspective), windows joined in order. `keep`: conversation ids."""
    from schemas.checked_reader import iter_conversations

    out = []
    for joined in iter_conversations(dataset, conversation_ids=keep):
        meta = joined["meta.json"]
        ckey, persp = meta["conversation_key"], meta["perspective"]
        conv = _conversation(f"{safe_name(ckey)}_{safe_name(persp)}", joined)
        conv.conversation_id, conv.conversation_key, conv.perspective = meta["conversation_id"], ckey, persp
        out.append(conv)
        if limit and len(out) >= limit:
            break
    return out


def join_windows(name: str, samples: Sequence[dict]) -> Conversation:
    """Join a conversation's windows (one perspective) into one `Conversation` (real micro-turns only)."""
    from schemas.reader import join_windows as join

    return _conversation(name, join(samples))


def _conversation(name: str, joined: dict[str, Any]) -> Conversation:
    """A `Conversation` of a joined conversation (schemas.reader.join_windows): its dMel, activity, labels and
    floor, mask and words (not its events), the user's 16 kHz PCM and the video frames when the dataset has them."""
    from schemas.reader import JOINED_ARRAYS

    sample: dict[str, Any] = {m: joined[m] for m in JOINED_ARRAYS if m in joined}
    sample["mask.npy"] = joined["mask.npy"]
    sample["words.json"] = joined["words.json"]
    sample["meta.json"] = joined["meta.json"]
    return Conversation(
        name=name,
        sample=sample,
        user_pcm=joined.get("input.flac"),
        frames=joined.get("frames"),
        frame_valid=joined.get("frame_mask"),
    )


def conversations_from_clips(clips_dir: str, *, limit: int = 0) -> list[Conversation]:
    """Exported Full-Duplex-Bench clips (`microturn export fdbench`): each folder with an input.wav is one
    conversation whose user side is that audio (dMel as the pipeline computes it) and whose user words come from
    transcription.json (placed in the micro-turn holding their end, as the pipeline places user words)."""
    import soundfile as sf

    from schemas.dmel import dmel_codes

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
                                "microturn": min(microturn_of_seconds(b), k - 1),
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

    with tempfile.TemporaryDirectory(prefix="microturn-respond-") as tmp:  # read whole into memory, then removed
        logger.info("%s is not a dataset: running the pipeline into %s", path, tmp)
        run(["--input", path, "--output", os.path.join(tmp, "dataset"), "--keep_audio"])
        return conversations_from_dataset(os.path.join(tmp, "dataset"), keep=keep, limit=limit)


# ---------------------------------------------------------------- outputs


def write_outputs(conv: Conversation, gen: Generated, out_dir: str, *, seed: int = 0) -> dict[str, Any]:
    """Write words.json, decisions.json, model.wav, dialogue.wav (or output.wav for an fdbench clip), and for a
    dataset conversation out_dir/{conversation_key}.json unless an earlier perspective wrote it (module docstring)."""
    import soundfile as sf

    from evals.vocode import frame_activity, stereo
    from schemas.dmel import dmel_to_audio

    act = frame_activity(gen.dmel)
    model_pcm = dmel_to_audio(gen.dmel, seed=seed)
    user_pcm = conv.user_pcm if conv.user_pcm is not None else dmel_to_audio(conv.sample["input.dmel.npy"], seed=seed)
    if conv.fdbench_out is not None:
        folder = confined_join(out_dir, conv.fdbench_out)
        os.makedirs(folder, exist_ok=True)
        sf.write(os.path.join(folder, "output.wav"), model_pcm[: len(user_pcm)], SAMPLE_RATE_HZ, subtype="PCM_16")
    else:
        folder = confined_join(out_dir, safe_name(conv.name))
        os.makedirs(folder, exist_ok=True)
        sf.write(os.path.join(folder, "model.wav"), model_pcm, SAMPLE_RATE_HZ, subtype="PCM_16")
    sf.write(os.path.join(folder, "dialogue.wav"), stereo(user_pcm, model_pcm), SAMPLE_RATE_HZ, subtype="PCM_16")
    with open(os.path.join(folder, "words.json"), "w", encoding="utf-8") as f:
        json.dump(gen.words(), f, indent=1, ensure_ascii=False)
    decisions = [
        {
            "microturn": k,
            "start_s": round(microturn_start_s(k), 3),
            "activity": round(float(a), 4),
            "speak": bool(a > 0),
        }
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
    path = confined_join(out_dir, f"{safe_name(conv.conversation_key)}.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            earlier = json.load(f).get("perspective")
        if earlier is not None and earlier != conv.perspective and earlier < str(conv.perspective):
            return None
    obj = {"conversation_id": conv.conversation_id, "perspective": conv.perspective, "words": gen.timed_words()}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
    return path
