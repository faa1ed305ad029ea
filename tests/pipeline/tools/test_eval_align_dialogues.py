"""`microturn eval-align --dialogues`: the aligner measured per voice, per speaking rate and per word class on
`synth dialogues` conversations (issue 23 point 10).

    PYTHONPATH=. HF_HUB_OFFLINE=1 python -m pytest -q tests/pipeline/tools/test_eval_align_dialogues.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.tools import cmd_eval_align
from pipeline.aligners import AlignerConfig, load_backend
from pipeline.tools.eval_align import (
    WordOutcome,
    class_table,
    evaluate,
    group_table,
    load_conversations,
    word_classes,
)
from schemas.bundle import Word
from synth.dialogues import DialogueConfig, make_dialogues, rate_casts
from synth.engines import VOICE_BANK, VOICES_BY_NAME

CAST = (("es-us-f4", 1.25), ("fl-kal", 1.0))
"""The fastest espeak-ng voice sped up (whose words all went unplaced before the 200 frames/s search) beside flite."""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny-dialogue")
    # no filled pause before a pause: in this dialogue pocketsphinx ends such an "um" 260 ms late (issue 23, point 10,
    # the open part: fillers and backchannels); the fixture measures the rate search, as before recipe 2
    make_dialogues(out, 1, seed=3, config=DialogueConfig(duration_s=(8.0, 10.0), pause_filler_p=0.0), casts=[CAST])
    return out


def test_rate_casts_give_every_voice_every_rate() -> None:
    casts = rate_casts(2, [0.8, 1.25], seed=0)
    assert len(casts) == 2 * 19  # ceil(19 voices * 2 / 2) a rate
    for rate in (0.8, 1.25):
        spoken = [name for cast in casts for name, r in cast if r == rate]
        assert {n: spoken.count(n) for n in spoken} == {v.name: 2 for v in VOICE_BANK}
    assert all(a != b for (a, _), (b, _) in casts)
    with pytest.raises(ValueError, match="per_voice"):
        rate_casts(0, [1.0])


def test_a_voice_at_a_rate_is_faster_or_slower() -> None:
    assert VOICES_BY_NAME["es-us-f4"].at_rate(1.25).rate_wpm == 238  # 190 words a minute x 1.25
    assert VOICES_BY_NAME["fe-ked"].at_rate(1.25).stretch == pytest.approx(1.1 / 1.25, abs=1e-4)
    assert VOICES_BY_NAME["fl-kal"].at_rate(0.8).name == "fl-kal"


def test_the_cast_and_rates_are_in_the_bundle(tiny: Path) -> None:
    (conv,) = load_conversations(tiny)
    synth = conv.extra["synth"]
    assert synth["speaker_voices"] == {"A": "es-us-f4", "B": "fl-kal"}
    assert synth["speaker_rates"] == {"A": 1.25, "B": 1.0}


def test_word_classes_position_overlap_and_kind() -> None:
    def w(text: str, a: float, b: float, sp: str = "A") -> Word:
        return Word(text=text, start_s=a, end_s=b, speaker=sp)

    mine = [w("so", 1.0, 1.2), w("the", 1.2, 1.3), w("harbour", 1.4, 1.9), w("yes", 3.0, 3.4)]
    other = [w("mm", 1.85, 2.1, "B")]
    classes = word_classes(mine, other)
    assert classes[0] == ("ipu_initial", "function_word")
    assert classes[1] == ("connected", "function_word", "short")
    assert classes[2] == ("after_short_gap", "ipu_final", "in_overlap", "content_word")
    assert classes[3] == ("ipu_initial", "ipu_final", "content_word")


def test_tables_give_the_goal_figures_per_group() -> None:
    def o(voice: str, rate: float, placed: bool, err: float, same: bool, near: bool, *cls: str) -> WordOutcome:
        return WordOutcome(
            voice=voice,
            rate=rate,
            placed=placed,
            start_error_ms=err,
            end_error_ms=err,
            same_microturn=same,
            within_one_microturn=near,
            classes=cls,
        )

    words = [
        *(o("v1", 1.0, True, 10.0, True, True, "connected") for _ in range(9)),
        o("v1", 1.0, False, 300.0, False, False, "ipu_initial"),
        *(o("v2", 1.25, True, 5.0, True, True, "connected") for _ in range(10)),
    ]
    by_voice = group_table(words, "voice").splitlines()
    assert by_voice[1].split() == ["v1", "10", "10.0", "10.0", "169.5", "90.0", "90.0", "unplaced,p95,within"]
    assert by_voice[2].split() == ["v2", "10", "0.0", "5.0", "5.0", "100.0", "100.0", "ok"]
    assert by_voice[3].split()[:3] == ["all", "20", "5.0"]
    assert [line.split()[0] for line in group_table(words, "rate").splitlines()[1:]] == ["1x", "1.25x", "all"]
    classes = {line.split()[0]: line.split()[1:] for line in class_table(words).splitlines()[1:]}
    assert classes["ipu_initial"] == ["1", "1", "100.0", "1", "1", "300.0"]
    assert classes["connected"][:5] == ["19", "0", "0.0", "0", "0"]


def test_measured_per_voice_on_a_tiny_dialogue(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    convs = load_conversations(tiny)
    report = evaluate(convs, load_backend(AlignerConfig(backend="pocketsphinx")), mode="text")
    assert len(report.words) == report.ref_words == len(convs[0].words or ())
    fast = [w for w in report.words if w.voice == "es-us-f4"]
    assert fast and {w.rate for w in fast} == {1.25}
    # measured: before the 200 frames/s search every es-us-f4 word was unplaced (27 of 27, 25.9 % in the correct
    # micro-turn); now none (100 %)
    assert sum(not w.placed for w in fast) == 0
    assert sum(w.same_microturn for w in fast) / len(fast) >= 0.8
    assert all(w.within_one_microturn for w in report.words)
    assert cmd_eval_align(["--input", str(tiny), "--aligner", "pocketsphinx", "--mode", "text"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ")}
    assert rows["es-us-f4"][2] == "0.0" and rows["fl-kal"][2] == "0.0"  # unplaced %
    assert "1.25x" in rows and "1x" in rows  # per speaking rate
    assert "ipu_initial" in rows and "function_word" in rows  # per word class


def test_microturn_eval_align_dialogues_is_one_command(capsys: pytest.CaptureFixture[str]) -> None:
    from microturn_cli import main

    argv = ["eval-align", "--aligner", "pocketsphinx", "--mode", "text", "--dialogues", "1", "--rates", "1.25"]
    assert main([*argv, "--dialogue_s", "8,10"]) == 0
    out = capsys.readouterr().out
    assert "conversations 10," in out  # ceil(19 / 2)
    voices = {
        line.split()[0]
        for line in out.splitlines()
        if line.startswith("  ")
        and line.split()[0][:3]
        in (
            "es-",
            "fl-",
            "fe-",
        )
    }
    assert voices == set(VOICES_BY_NAME)


def _words_of(tmp_path: Path, index: int, voice: str) -> list[WordOutcome]:
    """`voice`'s words in conversation `index` of `eval-align --dialogues 2`, generated again with its seed and cast."""
    casts = rate_casts(2, [0.8, 1.0, 1.25], seed=0)
    config = DialogueConfig(duration_s=(14.0, 18.0))
    make_dialogues(tmp_path, 1, 0, config=config, casts=casts[index : index + 1], start_index=index)
    (conv,) = load_conversations(tmp_path)
    assert conv.id == f"dlg-train-s0-{index:05d}" and voice in conv.extra["synth"]["speaker_voices"].values()
    report = evaluate([conv], load_backend(AlignerConfig(backend="pocketsphinx")), mode="text")
    return [w for w in report.words if w.voice == voice]


def test_a_squeezed_edge_word_is_not_moved_where_it_is_squeezed_as_much(tmp_path: Path) -> None:
    """Conversation 50 of `eval-align --dialogues 2` (es-wm-f5 at 1.0x): "I forgot to uh / download": the filler
    before a pause aligned short at its region's end, and the edge repair moved it 1.1 s on into the next region,
    where it was squeezed too (a move chosen by likelihood alone). A move must now squeeze fewer words."""
    voice = _words_of(tmp_path, 50, "es-wm-f5")
    assert voice and all(w.within_one_microturn for w in voice)  # before: "uh" 1.1 s late


@pytest.mark.parametrize(
    ("index", "voice", "word"),
    [(45, "es-us-f4", "tuned [the] / loud"), (32, "fe-ked", "there is [a] / greasy")],
)
def test_a_clause_last_word_at_its_region_end_stays_there(tmp_path: Path, index: int, voice: str, word: str) -> None:
    """Conversations 45 and 32 of `eval-align --dialogues 2`: a clause's last short word right at its region's end,
    before a within-turn pause. With 0.15 s of silence after it no search reached the end of the region's text, so
    the region failed with its own words and the edge repair put the word at the next region's start (0.6-0.8 s
    late); the region is now searched again with more of its silence (`chunks.WIDE_PAD_S`)."""
    words = _words_of(tmp_path, index, voice)
    assert words and all(w.within_one_microturn for w in words), word


def test_a_split_that_leaves_a_region_edge_to_no_word_is_not_chosen(tmp_path: Path) -> None:
    """Conversation 27 (es-la-m7): "the passport at uh / the harbour". The split with "the" before the pause
    (squeezed onto the filler, "uh" onto "at") aligned with a higher likelihood than the right one and squeezed no
    more words by score; but the next region's first 0.14 s of sound, "the", was left to no word
    (`EDGE_UNCOVERED_S`)."""
    words = _words_of(tmp_path, 27, "es-la-m7")
    assert words and all(w.within_one_microturn for w in words)


@pytest.mark.parametrize(
    ("index", "voice", "words"),
    [(26, "es-sc-f1", "sure do you"), (4, "es-us-f4", "yeah I want"), (6, "es-la-m7", "at the uh hall")],
)
def test_a_word_said_otherwise_than_the_dictionary_keeps_its_neighbour_off_its_tail(
    tmp_path: Path, index: int, voice: str, words: str
) -> None:
    """espeak-ng says "sure" S'U@ (Scottish, conversation 26), "yeah" j'Eh (conversation 4) and, in its Lancastrian
    voice, "uh" with the vowel of "foot" (conversation 6); the dictionary SH UH R, Y AE and AH: a neighbour was
    aligned onto the long vowel (0.2-0.4 s off). With espeak-ng's
    pronunciations beside the dictionary's (`TTS_PRONUNCIATIONS`) every word stays within one micro-turn."""
    found = _words_of(tmp_path, index, voice)
    assert found and all(w.within_one_microturn for w in found), words
