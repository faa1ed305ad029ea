"""On the demo conversations the labels the job computes equal the ones the generator planted."""

import json
from pathlib import Path

import numpy as np

from schemas.reader import iter_samples
from schemas.sample import LABEL_BITS

PLANTED_TO_LABEL = {  # (planted type, by the model?) -> label name in that perspective
    ("backchannel", False): "backchannel",
    ("backchannel", True): "output_backchannel",
    ("interruption", False): "interruption",
    ("interruption", True): "output_interruption",
    ("yield", False): "yield_to_input",
    ("yield", True): "yield_to_output",
}


def _onsets(labels: np.ndarray, name: str) -> set[int]:
    return {int(i) for i in np.nonzero(labels & LABEL_BITS[name])[0]}


def test_labels_equal_planted_events_in_every_perspective(demo_dataset: Path) -> None:
    per_persp: dict[tuple[str, str], dict] = {}
    for s in iter_samples(str(demo_dataset / "dataset")):
        meta = s["meta.json"]
        entry = per_persp.setdefault((meta["conversation_id"], meta["speakers"]["output"]), {"labels": {}, "act": {}})
        entry["labels"][meta["start_microturn"]] = s["labels.npy"][: meta["num_microturns"]]
        entry["act"][meta["start_microturn"]] = s["activity.npy"][: meta["num_microturns"]]
    assert len(per_persp) == 10
    checked = {name: 0 for name in LABEL_BITS}
    for (conv_id, model), entry in sorted(per_persp.items()):
        labels = np.concatenate([entry["labels"][k] for k in sorted(entry["labels"])])
        act = np.concatenate([entry["act"][k] for k in sorted(entry["act"])])
        bundle = demo_dataset / "bundles" / conv_id
        planted = json.loads((bundle / "planted.json").read_text())
        words = json.loads((bundle / "bundle.json").read_text())["words"]
        expected: dict[str, set[int]] = {name: set() for name in PLANTED_TO_LABEL.values()}
        for e in planted["events"]:
            name = PLANTED_TO_LABEL.get((e["type"], e["by"] == model))
            if name is not None:
                expected[name].add(int(e["start_s"] // 0.2))
        for name, mts in expected.items():
            assert _onsets(labels, name) == mts, (conv_id, model, name)  # precision and recall 1.0
            checked[name] += len(mts)
        # overlap: micro-turns where both speak, from the words the generator placed
        both = np.zeros((2, len(labels)), dtype=bool)
        for w in words:
            row = 0 if w["speaker"] == model else 1
            a, b = int(round(w["start"] * 16000)), int(round(w["end"] * 16000))
            both[row, a // 3200 : -(-b // 3200)] = True
        got = (labels & LABEL_BITS["input_speech"] > 0) & (labels & LABEL_BITS["output_speech"] > 0)
        assert np.array_equal(got, both[0] & both[1]), (conv_id, model)
        assert np.array_equal(act[:, 2] > 0, both[0]) and np.array_equal(act[:, 0] > 0, both[1])
        checked["input_speech"] += int(got.sum())
    # every planted kind was seen, in both directions
    assert all(checked[n] >= 5 for n in PLANTED_TO_LABEL.values()), checked
    assert checked["input_speech"] > 50  # overlapping micro-turns
