"""Gander JSONL in -> `microturn import gander` -> bundles -> dataset -> Gander JSONL out: a hand-written English
conversation (user audio made with espeak-ng here, assistant speech synthesised by the import, which the job itself
cannot do) keeps its turn times within one micro-turn and its events; a conversation whose audio is missing is
rejected with the file's name."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

import microturn_cli
from schemas.validate import validate
from synth.espeak import EspeakBackend
from synth.tts import Voice

MICROTURN_MS = 200


def _speech(backend: EspeakBackend, text: str) -> np.ndarray:
    voice = Voice(voice_id="u", engine_voice="en-us+m3", rate_wpm=170)
    gap = np.zeros(int(0.08 * backend.sample_rate_hz), np.float32)
    return np.concatenate([np.concatenate([backend.synthesize_word(w, voice), gap]) for w in text.split()])


def _write_gander(root: Path) -> tuple[Path, dict]:
    backend = EspeakBackend()
    rate = backend.sample_rate_hz
    ask, other = _speech(backend, "convert twenty euros to dollars"), _speech(backend, "what day is it today")
    pad = np.zeros(rate // 2, np.float32)
    audio = np.concatenate([pad, ask, pad, other])  # one recording; the turns cut it by start_ms / end_ms
    sf.write(root / "user.wav", audio, rate, subtype="PCM_16")
    ms = lambda n: round(1000 * n / rate)  # noqa: E731
    a0, a1 = ms(len(pad)), ms(len(pad) + len(ask))
    b0, b1 = ms(2 * len(pad) + len(ask)), ms(len(audio))
    t_ask, t_ack, t_other, t_final, t_weave = 600, a1 - a0 + 1100, a1 - a0 + 3500, a1 - a0 + 5100, a1 - a0 + 6300
    conv = {
        "id": "gander-en-1",
        "turns": [
            {
                "role": "user",
                "start_ms": t_ask,
                "end_ms": t_ask + a1 - a0,
                "text": "convert twenty euros to dollars",
                "audio_in": {"path": "user.wav", "sample_rate": rate, "start_ms": a0, "end_ms": a1},
            },
            {
                "role": "assistant",
                "start_ms": t_ack,
                "end_ms": t_ack + 1000,
                "text": "sure one moment",
                "tool_calls": [{"name": "task_start", "arguments": {"name": "convert 20 EUR to USD"}}],
            },
            {
                "role": "user",
                "start_ms": t_other,
                "end_ms": t_other + b1 - b0,
                "text": "what day is it today",
                "audio_in": {"path": "user.wav", "sample_rate": rate, "start_ms": b0, "end_ms": b1},
                "meta": {"transcript": "what day is it today"},
            },
            {
                "role": "tool",
                "start_ms": t_final,
                "end_ms": t_final,
                "tool_response": {
                    "type": "worker_delivery",
                    "topic": "final",
                    "status": "done",
                    "task_name": "convert 20 EUR to USD",
                    "content": "20 EUR = 21.60 USD",
                },
                "meta": {"runtime_event": True},
            },
            {
                "role": "assistant",
                "start_ms": t_weave,
                "end_ms": t_weave + 1500,
                "text": "twenty euros is about twenty two dollars",
            },
        ],
    }
    broken = json.loads(json.dumps(conv))
    broken["id"] = "gander-missing"
    broken["turns"][0]["audio_in"]["path"] = "nowhere.wav"
    path = root / "conversations.jsonl"
    path.write_text(json.dumps(conv) + "\n" + json.dumps(broken) + "\n", encoding="utf-8")
    return path, conv


def test_gander_round_trip(tmp_path: Path) -> None:
    path, conv = _write_gander(tmp_path)
    dataset, bundles = tmp_path / "dataset", tmp_path / "bundles"
    assert microturn_cli.main(["import", "gander", str(path), "--out", str(bundles)]) == 0  # speaks the assistant
    # the missing file's bundle names it in the Gander file's directory: let the job look there (and reject it)
    run = [
        "run",
        "--input",
        str(bundles),
        "--output",
        str(dataset),
        "--keep_audio",
        "--extra_input_root",
        str(tmp_path),
    ]
    assert microturn_cli.main(run) == 0
    assert validate(str(dataset)).ok
    rejected = pq.read_table(dataset / "rejected.parquet").to_pylist()
    assert [(r["conversation_id"], r["kind"]) for r in rejected] == [("gander-missing", "missing_file")]
    assert "nowhere.wav" in rejected[0]["reason"]

    out = tmp_path / "export" / "back.jsonl"
    assert microturn_cli.main(["export", "gander", str(dataset), "--out", str(out)]) == 0
    (back,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert back["id"] == conv["id"]

    # the same events, at times within one micro-turn
    def events(c):
        out = []
        for t in c["turns"]:
            for call in t.get("tool_calls") or []:
                out.append((t["end_ms"] if t["text"] else t["start_ms"], call["name"], call["arguments"]))
            if "tool_response" in t:
                r = t["tool_response"]
                out.append((t["start_ms"], r["type"], (r["topic"], r["status"], r["task_name"], r["content"])))
        return out

    want, got = events(conv), events(back)
    assert [e[1:] for e in got] == [e[1:] for e in want]
    assert all(abs(g[0] - w[0]) <= MICROTURN_MS for g, w in zip(got, want, strict=True))
    # user turns: same starts and ends within one micro-turn, audio paths to exported WAVs that hold speech
    user_in = [t for t in conv["turns"] if t["role"] == "user"]
    user_out = [t for t in back["turns"] if t["role"] == "user"]
    assert len(user_out) == len(user_in)
    for a, b in zip(user_in, user_out, strict=True):
        assert abs(a["start_ms"] - b["start_ms"]) <= MICROTURN_MS and abs(a["end_ms"] - b["end_ms"]) <= MICROTURN_MS
        wav, rate = sf.read(out.parent / b["audio_in"]["path"])
        cut = wav[b["audio_in"]["start_ms"] * rate // 1000 : b["audio_in"]["end_ms"] * rate // 1000]
        assert np.sqrt(np.mean(cut**2)) > 0.01
    said = [t for t in back["turns"] if t["role"] == "assistant" and t["text"]]
    starts = [conv["turns"][1]["start_ms"], conv["turns"][4]["start_ms"]]
    assert len(said) == 2 and all(abs(t["start_ms"] - w) <= MICROTURN_MS for t, w in zip(said, starts, strict=True))
    assert said[0]["text"] == "sure one moment" and "speech_out" in said[0]
