import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.decode import decode_conversation, decode_file, resample_to_16k
from pipeline.features import dmel_codes
from pipeline.rejects import DECODE_KINDS, DecodeError
from schemas.bundle import Conversation, Track

from ..factories import tone


def _ffmpeg(src: Path, dst: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True)
    return dst


def test_same_audio_in_three_containers_gives_the_same_codes(tmp_path: Path) -> None:
    """WAV and FLAC decode in-process, AIFF through ffmpeg; all at 44.1 kHz through the same resampler."""
    wav = tmp_path / "a.wav"
    audio = tone(2.345, rate=44_100)
    sf.write(wav, audio, 44_100, subtype="PCM_16")
    flac = _ffmpeg(wav, tmp_path / "a.flac")
    aiff = _ffmpeg(wav, tmp_path / "a.aiff")
    codes = []
    for path in (wav, flac, aiff):
        pcm, rate = decode_file(str(path))
        assert rate == 44_100 and pcm.shape == (len(audio), 1)
        mono = resample_to_16k(pcm[:, 0].astype(np.float32) / 32768.0, rate)
        assert len(mono) == -(-len(audio) * 16_000 // 44_100)  # from the decoded PCM
        codes.append(dmel_codes(mono))
    assert np.array_equal(codes[0], codes[1]) and np.array_equal(codes[0], codes[2])


def test_mp3_decodes_through_ffmpeg_to_the_sample_count_of_its_audio(tmp_path: Path) -> None:
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(3.0, rate=16_000), 16_000)
    pcm, rate = decode_file(str(_ffmpeg(wav, tmp_path / "a.mp3")))
    assert rate == 16_000 and abs(pcm.shape[0] - 48_000) <= 1152  # one MP3 frame at most


def test_block_resampling_equals_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(0).standard_normal(48_000 * 3).astype(np.float32)
    whole = resample_to_16k(x, 48_000)
    import pipeline.decode as decode

    monkeypatch.setattr(decode, "RESAMPLE_BLOCK_S", 1)
    assert np.array_equal(resample_to_16k(x, 48_000), whole)


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.wav"
    sf.write(good, tone(2.0), 16_000, subtype="PCM_16")
    noise = tmp_path / "noise.flac"
    sf.write(noise, np.random.default_rng(0).uniform(-0.5, 0.5, 32_000).astype(np.float32), 16_000)
    files = {
        "truncated": tmp_path / "truncated.wav",
        "truncated_flac": tmp_path / "truncated.flac",
        "empty": tmp_path / "empty.wav",
        "not_audio": tmp_path / "notes.mp3",
        "missing": tmp_path / "missing.wav",
    }
    files["truncated"].write_bytes(good.read_bytes()[:30_000])
    files["truncated_flac"].write_bytes(noise.read_bytes()[:30_000])
    files["empty"].write_bytes(b"")
    files["not_audio"].write_text("this is not audio\n")
    return files


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated", "truncated WAV: the header announces 32000 frames"),
        ("truncated_flac", "corrupt or truncated"),
        ("empty", "empty"),
        ("not_audio", "not decodable audio"),
        ("missing", "does not exist"),
    ],
)
def test_bad_files_are_rejected_with_a_reason(bad_files: dict[str, Path], name: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_file(str(bad_files[name]))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("truncated", "truncated_wav"),
        ("truncated_flac", "undecodable_audio"),  # libsndfile cannot open it: it cannot tell cut from corrupt
        ("empty", "empty_file"),
        ("not_audio", "undecodable_audio"),
        ("missing", "missing_file"),
    ],
)
def test_bad_files_are_rejected_with_a_kind(bad_files: dict[str, Path], name: str, kind: str) -> None:
    with pytest.raises(DecodeError) as e:
        decode_file(str(bad_files[name]))
    assert e.value.kind == kind and kind in DECODE_KINDS
    assert str(bad_files[name]) in str(e.value)  # the readable reason still names the file


def test_decode_error_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown DecodeError kind 'no_such_kind'"):
        DecodeError("no_such_kind", "x")
    import pickle

    back = pickle.loads(pickle.dumps(DecodeError("truncated_wav", "a.wav: truncated WAV")))
    assert (back.kind, str(back)) == ("truncated_wav", "a.wav: truncated WAV")


def test_channel_map_is_checked_and_tracks_are_padded(tmp_path: Path) -> None:
    stereo = tmp_path / "s.wav"
    sf.write(stereo, np.stack([tone(1.0), tone(1.0, freq=400)], axis=1), 16_000)
    short = tmp_path / "b.wav"
    sf.write(short, tone(0.5), 16_000)
    ok = decode_conversation(
        Conversation(
            id="x",
            origin="o",
            tracks=(Track(speaker="A", path=str(stereo), channel=1), Track(speaker="B", path=str(short))),
        )
    )
    assert ok.num_samples == 16_000 and ok.track_samples == {"A": 16_000, "B": 8_000}
    assert len(ok.streams["B"]) == 16_000 and not ok.streams["B"][8_000:].any()
    with pytest.raises(DecodeError, match="channel map asks for channel 2 .* has 2 channel") as e:
        decode_conversation(
            Conversation(
                id="x",
                origin="o",
                tracks=(
                    Track(speaker="A", path=str(stereo), channel=0),
                    Track(speaker="B", path=str(stereo), channel=2),
                ),
            )
        )
    assert e.value.kind == "bad_channel_map"
