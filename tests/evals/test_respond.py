"""Streaming inference: the KV-cache path equals a full-sequence forward pass; outputs are deterministic and written.

PYTHONPATH=. python -m pytest -q tests/trainer/test_respond.py
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import soundfile as sf
import torch

from evals.respond import write_outputs, write_response_file
from schemas.dmel import DMEL_CHANNELS, DMEL_LEVELS, FRAMES_PER_MICROTURN, SILENCE_CODE
from schemas.layout import IN_TEXT, OUT_DMEL, OUT_TEXT, SPEAK, TEXT_END, TEXT_PAD, microturn_slots
from schemas.units import SAMPLES_PER_MICROTURN
from trainer.checkpoint import load_model, save
from trainer.config import DataConfig, ModelConfig, TrainConfig
from trainer.generate import Conversation, full_sequence, generate, pack_conversation, sample_logits
from trainer.model import Model


@pytest.fixture(autouse=True)
def one_thread():
    """Small ops: one thread is fastest, and spinning OpenMP threads crawl on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(
    frame_patches: int = 4, text_slots: int = 5, context: int = 4, seed: int = 0, user_text: str = "heard"
) -> Model:
    torch.manual_seed(seed)
    cfg = TrainConfig(
        model=ModelConfig(dim=32, layers=2, heads=2, experts=4, top_k=2, ffn_dim=48, stem_dim=16),
        data=DataConfig(
            context_microturns=context, frame_patches=frame_patches, text_slots=text_slots, user_text=user_text
        ),
        moe_impl="loop",
    )
    return Model(cfg).eval()


def conversation(k: int, *, frames: bool, seed: int = 0) -> Conversation:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, DMEL_LEVELS, size=(k, FRAMES_PER_MICROTURN, DMEL_CHANNELS), dtype=np.uint8)
    words = [
        {"text": "hello", "stream": "input", "start_s": 0.0, "end_s": 0.3, "microturn": 1},
        {"text": "yes", "stream": "output", "start_s": 0.4, "end_s": 0.5, "microturn": 2},
    ]
    sample = {
        "input.dmel.npy": codes,
        "output.dmel.npy": np.zeros_like(codes),
        "mask.npy": np.ones(k, np.uint8),
        "words.json": words,
    }
    conv = Conversation(name="c", sample=sample, user_pcm=rng.normal(0, 0.1, k * SAMPLES_PER_MICROTURN))
    if frames:  # 2 x 2 patches of 40 px; no frame on screen in micro-turn 0
        conv.frames = rng.integers(0, 256, size=(k, 80, 80, 3), dtype=np.uint8)
        conv.frame_valid = np.arange(k) > 0
    return conv


@pytest.mark.parametrize(("temperature", "user_text"), [(0.0, "heard"), (1.0, "heard"), (1.0, "none")])
def test_kv_cache_equals_full_forward(temperature: float, user_text: str) -> None:
    model = tiny_model(user_text=user_text)
    conv = conversation(4, frames=True)
    gen = generate(model, conv, temperature=temperature, top_k=0 if temperature == 0 else 7, seed=3, trace=True)
    in_text = pack_conversation(conv, model.cfg).text[pack_conversation(conv, model.cfg).kind == IN_TEXT]
    assert (in_text < 256).any() == (user_text == "heard")  # "hello" is fed only when heard
    assert gen.dmel.shape == (4, FRAMES_PER_MICROTURN, DMEL_CHANNELS)
    assert (gen.text == TEXT_END).sum(1).tolist() == [1, 1, 1, 1]  # one END per micro-turn, PAD after it
    h, _ = model.trunk(full_sequence(model, conv, gen))
    h = h[0]
    replay = torch.Generator().manual_seed(3)
    slots = microturn_slots(model.cfg.data.layout)
    per = len(slots)
    for slot, logits in gen.trace:  # the slot is predicted from the hidden state of the slot before it
        kind = slots[slot % per]
        if kind == OUT_TEXT:
            full = model.text_head.proj(h[slot - 1])
        else:
            assert kind == OUT_DMEL
            full = model.dmel_head.proj(h[slot - 1]).view(DMEL_CHANNELS, DMEL_LEVELS)
        torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)
        k, j = divmod(slot, per)
        if kind == OUT_TEXT:
            j -= int(np.flatnonzero(slots == OUT_TEXT)[0])
            if j < model.cfg.data.text_slots - 1:  # the last text slot is END by construction, no draw
                assert int(sample_logits(full, temperature=temperature, top_k=7, generator=replay)) == gen.text[k, j]
        else:
            j -= int(np.flatnonzero(slots == OUT_DMEL)[0])
            drawn = sample_logits(full, temperature=temperature, top_k=7, generator=replay).numpy()
            assert (drawn == gen.dmel[k, j]).all()


def test_cache_window_bounds_the_cost_and_seed_fixes_the_output() -> None:
    model = tiny_model(frame_patches=0, context=2)
    conv = conversation(6, frames=False)
    a = generate(model, conv, seed=1)
    b = generate(model, conv, seed=1)
    c = generate(model, conv, seed=2)
    assert (a.dmel == b.dmel).all() and (a.text == b.text).all()
    assert not (a.dmel == c.dmel).all()
    # with a 1-micro-turn window, micro-turn 3 does not depend on what came before it
    x = dataclasses.replace(conv, sample=dict(conv.sample))
    x.sample["input.dmel.npy"] = conv.sample["input.dmel.npy"].copy()
    x.sample["input.dmel.npy"][:2] = 0
    g1 = generate(model, conv, temperature=0, window=1)
    g2 = generate(model, x, temperature=0, window=1)
    assert (g1.dmel[3] == g2.dmel[3]).all() and not (g1.dmel[1] == g2.dmel[1]).all()


def test_write_outputs(tmp_path) -> None:
    model = tiny_model(frame_patches=0)
    conv = conversation(3, frames=False)
    gen = generate(model, conv, seed=0)
    gen.text[1, :3] = [ord("h"), ord("i"), TEXT_END]
    gen.text[1, 3:] = TEXT_PAD
    info = write_outputs(conv, gen, str(tmp_path))
    folder = tmp_path / "c"
    words = json.loads((folder / "words.json").read_text())
    assert {"text": "hi", "microturn": 1, "start_s": 0.2, "end_s": 0.4} in words
    decisions = json.loads((folder / "decisions.json").read_text())
    assert len(decisions) == 3 and all(isinstance(d["speak"], bool) for d in decisions)
    stereo, sr = sf.read(folder / "dialogue.wav")
    assert sr == 16_000 and stereo.shape == (3 * SAMPLES_PER_MICROTURN, 2)
    mono, _ = sf.read(folder / "model.wav")
    assert mono.shape == (3 * SAMPLES_PER_MICROTURN,) and np.abs(mono).max() > 0
    assert info["folder"] == str(folder)


def test_response_file_is_what_eval_proactive_reads(tmp_path) -> None:
    """OUT/{conversation_key}.json: {conversation_id, perspective, words: [{text, start, end}]}, one per
    conversation (the first perspective in name order); fdbench clips and the folder files are unaffected."""
    model = tiny_model(frame_patches=0)
    conv = conversation(3, frames=False)
    gen = generate(model, conv, seed=0)
    gen.text[2, :4] = [ord("o"), ord("k"), ord(" "), TEXT_END]
    gen.text[2, 4:] = TEXT_PAD
    write_outputs(conv, gen, str(tmp_path))
    assert not list(tmp_path.glob("*.json"))  # no conversation id: no response file
    b = dataclasses.replace(conv, name="conv-1_b", conversation_id="conv 1", conversation_key="conv-1", perspective="b")
    write_outputs(b, gen, str(tmp_path))
    response = json.loads((tmp_path / "conv-1.json").read_text())
    assert response["conversation_id"] == "conv 1" and response["perspective"] == "b"
    assert {"text": "ok", "start": 0.4, "end": 0.6} in response["words"]
    assert all(set(w) == {"text", "start", "end"} for w in response["words"])
    a = dataclasses.replace(b, name="conv-1_a", perspective="a")
    assert write_response_file(a, gen, str(tmp_path)) == str(tmp_path / "conv-1.json")
    assert write_response_file(b, gen, str(tmp_path)) is None  # "a" comes first and stays
    assert json.loads((tmp_path / "conv-1.json").read_text())["perspective"] == "a"


def test_clip_user_words_are_placed_as_the_pipeline_places_them(tmp_path) -> None:
    """An exported FD-bench clip: its audio becomes the pipeline's dMel, and each transcribed user word goes to the
    micro-turn holding its end, on the sample grid (schemas.units): a word ending at 0.6 s is in micro-turn 3 (not 2,
    as int(0.6 / 0.2) would say), one ending past the audio in the last micro-turn."""
    from evals.respond import conversations_from_clips
    from schemas.dmel import dmel_codes

    clip = tmp_path / "v1.0" / "pause" / "clip_1"
    clip.mkdir(parents=True)
    pcm = (0.1 * np.sin(np.arange(16_000) / 10.0)).astype(np.float32)  # 1 s: 5 micro-turns
    sf.write(clip / "input.wav", pcm, 16_000, subtype="FLOAT")
    items = [{"text": "one", "timestamp": [0.1, 0.6]}, {"text": "two", "timestamp": [0.61, 0.79]}]
    items.append({"text": "late", "timestamp": [0.9, 1.3]})
    (clip / "transcription.json").write_text(json.dumps([{"item": items}]))
    (conv,) = conversations_from_clips(str(tmp_path))
    assert conv.name == "v1.0__pause__clip_1" and conv.fdbench_out == "v1.0/pause/clip_1"
    np.testing.assert_array_equal(conv.sample["input.dmel.npy"].reshape(-1, DMEL_CHANNELS), dmel_codes(pcm))
    assert [(w["text"], w["microturn"]) for w in conv.sample["words.json"]] == [("one", 3), ("two", 3), ("late", 4)]


def test_checkpoint_carries_user_text(tmp_path) -> None:
    """`generate` (and so `respond` and `eval behaviour`) packs with the checkpoint's user_text; a checkpoint
    written before the option existed was trained with the user's words and loads as `heard`."""
    model = tiny_model(frame_patches=0, user_text="none")
    save(tmp_path / "none.pt", {"model": model.state_dict(), "config": model.cfg.to_dict()})
    loaded = load_model(str(tmp_path / "none.pt"))
    assert loaded.cfg.data.user_text == "none" and loaded.cfg.data.layout.user_text == "none"
    conv = conversation(3, frames=False)
    a, b = generate(model, conv, seed=4), generate(loaded, conv, seed=4)
    assert (a.dmel == b.dmel).all()
    old = model.cfg.to_dict()
    del old["data"]["user_text"]
    save(tmp_path / "old.pt", {"model": model.state_dict(), "config": old})
    assert load_model(str(tmp_path / "old.pt")).cfg.data.user_text == "heard"


def test_speak_head_gates_silent_microturns_and_the_cache_still_equals_full_forward() -> None:
    torch.manual_seed(1)
    base = tiny_model()
    model = Model(dataclasses.replace(base.cfg, loss=dataclasses.replace(base.cfg.loss, speak_weight=1.0))).eval()
    conv = conversation(8, frames=False)
    free = generate(model, conv, temperature=1.0, top_k=7, seed=3, speak_threshold=0.0, window=8)
    assert np.isfinite(free.speak_prob).all()  # probabilities are kept; threshold 0 never gates
    cut = float(np.median(free.speak_prob))
    gen = generate(model, conv, temperature=1.0, top_k=7, seed=3, trace=True, speak_threshold=cut, window=8)
    silent = gen.speak_prob < cut
    assert silent.any() and (~silent).any()
    assert (gen.dmel[silent] == SILENCE_CODE).all()
    assert (gen.text[silent, 0] == TEXT_END).all() and (gen.text[silent, 1:] == TEXT_PAD).all()
    h, _ = model.trunk(full_sequence(model, conv, gen))
    h = h[0]
    slots = microturn_slots(model.cfg.data.layout)
    per = len(slots)
    speak_at = int(np.flatnonzero(slots == SPEAK)[0])
    with torch.no_grad():
        full_prob = torch.sigmoid(model.speak_head.logits(h[np.arange(conv.microturns) * per + speak_at])).numpy()
    np.testing.assert_allclose(gen.speak_prob, full_prob, atol=1e-5)  # read after silent micro-turns too
    traced_mts = {slot // per for slot, _ in gen.trace}
    assert traced_mts == set(np.flatnonzero(~silent).tolist())  # nothing is sampled in a silent micro-turn
    for slot, logits in gen.trace:
        if slots[slot % per] == OUT_DMEL:
            full = model.dmel_head.proj(h[slot - 1]).view(DMEL_CHANNELS, DMEL_LEVELS)
        else:
            full = model.text_head.proj(h[slot - 1])
        torch.testing.assert_close(logits, full, atol=1e-4, rtol=1e-4)


def test_stop_threshold_applies_after_a_spoken_microturn_only() -> None:
    """Hysteresis: a micro-turn that follows one the model spoke in is silent below `stop_threshold`, any other below
    `speak_threshold`."""
    torch.manual_seed(1)
    base = tiny_model()
    model = Model(dataclasses.replace(base.cfg, loss=dataclasses.replace(base.cfg.loss, speak_weight=1.0))).eval()
    conv = conversation(12, frames=False)
    free = generate(model, conv, temperature=1.0, top_k=7, seed=3, speak_threshold=0.0, window=8)
    start, stop = (float(q) for q in np.quantile(free.speak_prob, [0.4, 0.6]))
    for speak_at, stop_at in ((start, stop), (stop, start)):
        gen = generate(
            model, conv, temperature=1.0, top_k=7, seed=3, speak_threshold=speak_at, stop_threshold=stop_at, window=8
        )
        spoke = ~(gen.dmel == SILENCE_CODE).all(axis=(1, 2))
        after = np.concatenate([[False], spoke[:-1]])
        expected = np.where(after, gen.speak_prob >= stop_at, gen.speak_prob >= speak_at)
        np.testing.assert_array_equal(spoke, expected)
        assert after.any() and (~after).any()
    same = generate(model, conv, temperature=1.0, top_k=7, seed=3, speak_threshold=start, stop_threshold=start)
    plain = generate(model, conv, temperature=1.0, top_k=7, seed=3, speak_threshold=start)
    np.testing.assert_array_equal(same.dmel, plain.dmel)


def test_behaviour_workers_give_the_streams_of_one_process() -> None:
    """`eval behaviour --workers 2` (spawned processes) yields what one process does, conversation by conversation."""
    from evals.behaviour import _run_all

    torch.manual_seed(2)
    base = tiny_model()
    model = Model(dataclasses.replace(base.cfg, loss=dataclasses.replace(base.cfg.loss, speak_weight=1.0))).eval()
    convs = [conversation(6, frames=False, seed=s) for s in range(3)]
    opts = (1.0, 7, 5, 0.5, None)
    one, two = _run_all(model, convs, opts, 1), _run_all(model, convs, opts, 2)
    assert len(one) == len(two) == 3
    for (pred_a, prob_a, _), (pred_b, prob_b, _) in zip(one, two, strict=True):
        np.testing.assert_array_equal(pred_a, pred_b)
        np.testing.assert_allclose(prob_a, prob_b, atol=1e-6)
    assert len({tuple(p) for p, _, _ in one}) > 1 or len({tuple(np.round(q, 4)) for _, q, _ in one}) > 1
