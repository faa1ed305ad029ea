"""Which track is which speaker, on the real 4-party AMI excerpt, and who is user / others in a perspective."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.speakers import input_roles, match_tracks
from schemas.bundle import parse_rttm
from schemas.grid import Interval

from ..factories import FIXTURES

AMI = FIXTURES / "ami-seriously"
pytestmark = pytest.mark.skipif(not AMI.exists(), reason="shared fixtures not present")


def test_tracks_match_the_rttm_speaker_who_makes_them_loudest() -> None:
    segments = parse_rttm((AMI / "mixture.rttm").read_text())
    streams = {f"track{i}": sf.read(AMI / "sources" / f"source{i}.wav", dtype="float32")[0] for i in range(4)}
    mapping = match_tracks(streams, segments)
    assert sorted(mapping.values()) == ["FEE013", "FEE016", "MEE014", "MEO015"]
    # independent check across tracks (the matcher only compares each track with itself): during each speaker's
    # turns, the matched track is the loudest of the four in more 200 ms steps than any other track
    k = len(streams["track0"]) // 3200
    energy = np.stack([(streams[f"track{i}"][: k * 3200].reshape(k, 3200) ** 2).mean(axis=1) for i in range(4)])
    for track, speaker in mapping.items():
        steps = sorted(
            {m for s in segments if s.speaker == speaker for m in range(int(s.start_s / 0.2), int(s.end_s / 0.2))}
        )
        loudest = np.bincount(energy[:, steps].argmax(axis=0), minlength=4)
        assert loudest.argmax() == int(track[-1]), (speaker, loudest)


def test_unequal_counts_are_an_error() -> None:
    segments = parse_rttm("SPEAKER m 1 0 1 <NA> <NA> A <NA> <NA>\n")
    with pytest.raises(ValueError, match="2 unnamed tracks but the RTTM names 1"):
        match_tracks({"track0": np.zeros(16_000, np.float32), "track1": np.zeros(16_000, np.float32)}, segments)


def test_user_is_the_most_talkative_other_party() -> None:
    speech = {
        "M": [Interval(start=0, end=10)],
        "A": [Interval(start=0, end=5)],
        "B": [Interval(start=0, end=7)],
        "C": [Interval(start=0, end=7)],
    }
    assert input_roles("M", speech) == ("B", ("A", "C"))  # B and C tie: smallest id
    assert input_roles("B", speech) == ("M", ("A", "C"))
