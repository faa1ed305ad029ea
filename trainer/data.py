"""Loader: shards -> examples in the §6 layout -> static-shape batches, deterministic and resumable mid-epoch.

    python -c "from trainer.data import Loader; from trainer.config import preset; \
print({k: v.shape for k, v in next(iter(Loader('demo-out/dataset', preset('tiny').data))).items()})"

Order. Epoch e permutes the shards with a generator seeded by (seed, e). The stream is split over S = world_size *
num_workers *slots*: slot g reads shards g, g + S, ... of the permuted list when there are at least S shards, else
every shard but only the samples whose running index is g modulo S (so no slot is left empty). Within a slot, each
sample is cut into examples of `context_microturns` micro-turns, examples pass a shuffle buffer seeded by (seed, e,
g) and are grouped into batches (the last one padded with empty, fully masked examples). The shuffle buffer holds
spans of prepared samples (`Span`), not packed arrays: an example is packed when its batch is built, straight into
the batch's arrays (schemas.layout.PackedBatch; the same tensors as `pack` + `collate`, tested). Nothing depends on
timing, on which process runs a slot, or on anything but (seed, epoch, position).

Resume. The main process takes batches round-robin from its DataLoader workers (torch's in-order mode) and counts,
per slot, the batches it has consumed, and which slot comes next. A resumed loader re-reads each slot's stream and
skips the consumed batches (read, not packed), and rotates the slots over the workers so that
worker 0 plays the slot that was next: the batch sequence continues exactly where it stopped. Skipping re-reads
the skipped part of the epoch from the shards (a cost paid once per restart).

Flow-matching targets: the model stream's continuous log-mel comes from the raw audio member `output.flac` when
the dataset kept it (`--keep_audio`), else from the dequantised `output.dmel.npy` (the demo dataset: dMel). A
batch's "logmel" holds the OUT_DMEL slots' frames only, (B, C * 16, 80) (trainer/model.py flow_targets); every other
field is `Packed`'s with a leading batch dim.

Perspectives. A stored window (format 3) holds every speaker's streams once; the loader decodes it once and packs
one example stream per perspective (schemas.reader.decode_samples), as format 2's one sample per perspective did.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds

from schemas.checked_reader import shard_problem
from schemas.dmel import DMEL_CHANNELS, FRAMES_PER_MICROTURN, log_mel
from schemas.layout import LayoutSpec, Packed, PackedBatch, Prepared, output_logmel_rows, pack, prepare
from schemas.reader import decode_samples, shard_urls
from schemas.shard import FormatVersionError
from schemas.units import SAMPLES_PER_MICROTURN
from trainer.config import DataConfig

logger = logging.getLogger(__name__)

LOADER_MEMBERS = ("meta.json.zst", "dmel.npy.zst")
"""Stored members every window must have for the loader (schemas/layout.py pack); a sample without one is corrupt."""


def logmel_frames(pcm: np.ndarray, window_microturns: int) -> np.ndarray:
    """16 kHz PCM -> (W, 16, 80) float32 log10 mel (clipped to [-7, 2]): the continuous dMel before quantisation.

    Args:
        pcm: (n,) float32 samples; zero-padded or cut to W * 3200.
        window_microturns: W.
    """
    n = window_microturns * SAMPLES_PER_MICROTURN
    x = np.zeros(n, dtype=np.float32)
    x[: min(n, len(pcm))] = pcm[:n]
    return log_mel(x).reshape(window_microturns, FRAMES_PER_MICROTURN, DMEL_CHANNELS)


def sample_spans(sample: dict[str, Any], context: int) -> list[int]:
    """First micro-turns of the examples cut from a sample: 0, C, 2C, ... while the span holds a real micro-turn."""
    mask = np.asarray(sample["mask.npy"]).astype(bool)
    last = int(np.flatnonzero(mask)[-1]) if mask.any() else -1
    return list(range(0, last + 1, context))


def sample_examples(sample: dict[str, Any], cfg: DataConfig) -> Iterator[Packed]:
    """The examples of a sample, each packed alone (schemas.layout.pack, the reference path; the loader builds the
    same arrays in place: `sample_spans_prepared` + `collate_spans`)."""
    logmel = _output_logmel(sample)
    for first in sample_spans(sample, cfg.context_microturns):
        frames = sample.get("frames")  # decoded by schemas.reader when the dataset has video
        yield pack(
            sample,
            cfg.layout,
            first=first,
            count=cfg.context_microturns,
            output_logmel=logmel,
            frames=frames,
            frame_valid=None if frames is None else np.asarray(sample["frame_mask"], bool),
        )


def _output_logmel(sample: dict[str, Any]) -> np.ndarray | None:
    if "output.flac" not in sample:
        return None
    return logmel_frames(np.asarray(sample["output.flac"], dtype=np.float32), len(sample["mask.npy"]))


@dataclasses.dataclass(frozen=True, slots=True)
class Span:
    """One example to be: micro-turns [first, first + context) of a prepared sample, packed when its batch is
    built (the shuffle buffer holds these, not packed arrays)."""

    prepared: Prepared
    first: int


def sample_spans_prepared(sample: dict[str, Any], cfg: DataConfig) -> Iterator[Span]:
    """The examples of a sample as `sample_examples` cuts them, prepared once per sample, packed later."""
    frames = sample.get("frames")
    prepared = prepare(
        sample,
        cfg.layout,
        output_logmel=_output_logmel(sample),
        frames=frames,
        frame_valid=None if frames is None else np.asarray(sample["frame_mask"], bool),
    )
    for first in sample_spans(sample, cfg.context_microturns):
        yield Span(prepared, first)


def collate_spans(spans: list[Span], cfg: DataConfig, size: int | None = None) -> dict[str, torch.Tensor]:
    """The batch of `spans` packed in place (schemas.layout.PackedBatch), padded to `size` examples (default: as
    many as spans) with empty ones: the same tensors as `collate` of their `pack` results and `empty_example`s."""
    size = len(spans) if size is None else size
    batch = PackedBatch(cfg.layout, cfg.context_microturns, size)
    for row, span in enumerate(spans):
        batch.put(row, span.prepared, first=span.first)
    out: dict[str, torch.Tensor] = {}
    for name, value in batch.arrays().items():
        if name in ZERO_WHEN and getattr(batch, name) is None:  # as `collate`: one zero expanded, no memory
            out[name] = torch.zeros((), dtype=torch.uint8).expand(value.shape)
        elif isinstance(value, int):
            out[name] = torch.tensor(value)
        else:
            out[name] = torch.from_numpy(value)
    return out


def empty_example(spec: LayoutSpec, context: int) -> Packed:
    """A fully masked example: pads the last batch of a stream to a static shape; contributes no loss."""
    z = np.zeros((1, FRAMES_PER_MICROTURN, DMEL_CHANNELS), np.uint8)
    return pack(
        {"mask.npy": np.zeros(1, np.uint8), "input.dmel.npy": z, "output.dmel.npy": z}, spec, first=0, count=context
    )


ZERO_WHEN = {"patches": "patch_valid", "others_dmel": "has_others"}
"""Fields that are all zeros in a batch where no example has what the second field says: collated as one zero
expanded over the batch (a view, no memory; the model reads patches only where patch_valid, others only with
has_others). Stacking them cost ~90 % of the loader's time on a dataset without video (35 MB of patch zeros per
150-micro-turn example; benchmarks/storage.py)."""


def collate(examples: list[Packed]) -> dict[str, torch.Tensor]:
    """Stack examples: every `Packed` array field gains a leading batch dim; has_others becomes (B,) bool; logmel
    keeps the OUT_DMEL slots' rows only, (B, C * 16, 80) (schemas.layout.output_logmel_rows: the model reads the
    flow target there alone; building the whole (B, N, 80) was 35-40 % of the in-place loader's CPU time)."""
    out: dict[str, torch.Tensor] = {}
    for f in dataclasses.fields(Packed):
        values = [getattr(e, f.name) for e in examples]
        flag = ZERO_WHEN.get(f.name)
        if flag is not None and not any(np.any(getattr(e, flag)) for e in examples):
            out[f.name] = torch.zeros((), dtype=torch.uint8).expand(len(values), *values[0].shape)
        elif f.name in ("text_bytes_cut", "event_bytes_cut"):
            out[f.name] = torch.tensor(sum(values))
        elif f.name == "has_others":
            out[f.name] = torch.tensor(values, dtype=torch.bool)
        elif f.name == "logmel":
            out[f.name] = torch.from_numpy(np.stack([output_logmel_rows(e) for e in examples]))
        else:
            out[f.name] = torch.from_numpy(np.stack(values))
    return out


BAD_SHARD_POLICIES = ("stop", "skip")
"""What the loader does at a corrupt shard: stop with a message naming it, or skip it (logged and counted)."""


class CorruptShardError(ValueError):
    """A shard that cannot be read; the message names it and the --bad_shards option."""


def _seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in parts])


class ShardStream(torch.utils.data.IterableDataset):
    """One epoch of batches for one rank; each DataLoader worker serves one slot (see the module docstring)."""

    def __init__(
        self,
        urls: list[str],
        cfg: DataConfig,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        consumed: list[int] | None = None,
        next_slot: int = 0,
        bad_shards: str = "stop",
    ) -> None:
        super().__init__()
        if bad_shards not in BAD_SHARD_POLICIES:
            raise ValueError(f"bad_shards must be one of {BAD_SHARD_POLICIES}, got {bad_shards!r}")
        self.bad_shards, self.skipped_shards = bad_shards, 0
        self.urls, self.cfg, self.seed, self.epoch = list(urls), cfg, seed, epoch
        self.rank, self.world_size, self.shuffle = rank, world_size, shuffle
        self.slots = max(cfg.num_workers, 1)
        self.consumed = list(consumed) if consumed is not None else [0] * self.slots
        self.next_slot = next_slot

    def _samples(self, g: int, num_global: int) -> Iterator[dict[str, Any]]:
        order = _seed(self.seed, self.epoch).permutation(len(self.urls)) if self.shuffle else range(len(self.urls))
        urls = [self.urls[i] for i in order]
        by_shard = len(urls) >= num_global
        mine = urls[g::num_global] if by_shard else urls
        if not mine:
            return
        i = 0
        for url in mine:  # shard by shard, so that a corrupt one is named (and skipped with bad_shards="skip")
            try:
                if problem := shard_problem(url):  # a compressed tar could expand without bound: never opened
                    raise ValueError(problem)
                source = wds.DataPipeline(
                    wds.SimpleShardList([url]), wds.tarfile_to_samples(handler=wds.reraise_exception)
                )
                for raw in source:
                    if by_shard or i % num_global == g:
                        missing = [m for m in LOADER_MEMBERS if m not in raw]
                        if missing:  # a damaged header makes the tar reader lose members, not fail
                            raise ValueError(f"sample {raw.get('__key__')!r} lacks {', '.join(missing)}")
                        yield from decode_samples(raw)  # one per perspective of the window
                    i += 1
            except FormatVersionError:
                raise  # the whole dataset is in another format: the message says to re-run the job
            except Exception as e:  # noqa: BLE001 - tar, member or array errors of one shard
                if self.bad_shards != "skip":
                    raise CorruptShardError(
                        f"shard {url} is corrupt ({type(e).__name__}: {e}); rerun with --bad_shards skip to skip it"
                    ) from e
                self.skipped_shards += 1
                logger.warning(
                    "skipped corrupt shard %s (%s: %s); %d skipped", url, type(e).__name__, e, self.skipped_shards
                )

    def slot_examples(self, slot: int) -> Iterator[Span]:
        """The examples of a slot in this epoch (not packed yet), after the shuffle buffer."""
        num_global = self.world_size * self.slots
        g = self.rank * self.slots + slot
        rng = _seed(self.seed, self.epoch, g, 1)
        buffer: list[Span] = []
        size = self.cfg.shuffle_buffer if self.shuffle else 1
        for sample in self._samples(g, num_global):
            for ex in sample_spans_prepared(sample, self.cfg):
                if len(buffer) < size:
                    buffer.append(ex)
                    continue
                i = int(rng.integers(size))
                yield buffer[i]
                buffer[i] = ex
        if self.shuffle:
            rng.shuffle(buffer)
        yield from buffer

    def slot_batches(self, slot: int, skip: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        bs = self.cfg.batch_size
        batch: list[Span] = []
        index = 0
        for ex in self.slot_examples(slot):
            batch.append(ex)
            if len(batch) == bs:
                if index >= skip:  # skipped batches are never packed
                    yield collate_spans(batch, self.cfg)
                index, batch = index + 1, []
        if batch and index >= skip:
            yield collate_spans(batch, self.cfg, size=bs)  # padded with empty examples

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        slot = (worker + self.next_slot) % self.slots
        for batch in self.slot_batches(slot, skip=self.consumed[slot]):
            batch["slot"] = torch.tensor(slot)
            yield batch


class Loader:
    """Endless (or one-epoch) iterator of batches for one rank, with `state_dict` / `load_state_dict`.

    Args:
        data_dir: a dataset directory (manifest.json + shards), or a shard list file (DATASET/shards.txt or a subset
            of it; schemas.reader.shard_urls).
        cfg: batch size, context, workers, shuffle buffer, layout.
        seed: shuffle seed.
        rank, world_size: this process among the data-parallel ranks.
        epochs: None = loop forever (training); 1 = one pass (evaluation).
        shuffle: False reads shards and examples in file order (evaluation).

    `next(loader)` rolls over into the next epoch by itself; data-parallel training instead calls `next_in_epoch`
    (None when this rank's share is used up) and `next_epoch` on all ranks together (trainer/train.py).
    """

    def __init__(
        self,
        data_dir: str,
        cfg: DataConfig,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epochs: int | None = None,
        shuffle: bool = True,
        bad_shards: str = "stop",
    ) -> None:
        self.bad_shards = bad_shards
        self.urls = shard_urls(data_dir)
        if not self.urls:
            raise ValueError(f"{data_dir}: no shards listed")
        self.cfg, self.seed, self.rank, self.world_size = cfg, seed, rank, world_size
        self.epochs, self.shuffle = epochs, shuffle
        self.slots = max(cfg.num_workers, 1)
        self.epoch, self.consumed, self.next_slot = 0, [0] * self.slots, 0
        self._it: Iterator[dict[str, torch.Tensor]] | None = None
        self._done = False  # this epoch's batches are used up (set by next_in_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "consumed": list(self.consumed),
            "next_slot": self.next_slot,
            "seed": self.seed,
            "slots": self.slots,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "slots", "rank", "world_size"):
            if int(state[key]) != getattr(self, key):
                fix = "num_workers" if key == "slots" else key
                raise ValueError(
                    f"loader state was saved with {key}={state[key]}, this loader has "
                    f"{getattr(self, key)}: resume with the same {fix}"
                )
        self.epoch, self.consumed = int(state["epoch"]), list(state["consumed"])
        self.next_slot = int(state["next_slot"])
        self._it, self._done = None, False

    def _start(self) -> Iterator[dict[str, torch.Tensor]]:
        stream = ShardStream(
            self.urls,
            self.cfg,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            world_size=self.world_size,
            shuffle=self.shuffle,
            consumed=self.consumed,
            next_slot=self.next_slot,
            bad_shards=self.bad_shards,
        )
        if self.cfg.num_workers == 0:
            return iter(stream)
        return iter(
            torch.utils.data.DataLoader(stream, batch_size=None, num_workers=self.cfg.num_workers, in_order=True)
        )

    def __iter__(self) -> Loader:
        return self

    def next_in_epoch(self) -> dict[str, torch.Tensor] | None:
        """The next batch of the current epoch, or None once this rank's share of it is used up (the epoch is not
        advanced: data-parallel ranks call `next_epoch` together, padding with empty batches meanwhile)."""
        if self._done:
            return None
        if self._it is None:
            self._it = self._start()
        try:
            batch = next(self._it)
        except StopIteration:
            self._it, self._done = None, True
            return None
        slot = int(batch.pop("slot"))
        self.consumed[slot] += 1
        self.next_slot = (slot + 1) % self.slots
        return batch

    def next_epoch(self) -> None:
        self._it, self._done = None, False
        self.epoch, self.consumed, self.next_slot = self.epoch + 1, [0] * self.slots, 0

    @property
    def finished(self) -> bool:
        """True when a one-pass (or `epochs`-pass) loader has no epoch left."""
        return self.epochs is not None and self.epoch >= self.epochs

    def empty_batch(self) -> dict[str, torch.Tensor]:
        """A batch of fully masked examples (no targets, no attendable slots): a rank's share when it runs short."""
        return collate_spans([], self.cfg, size=self.cfg.batch_size)

    def __next__(self) -> dict[str, torch.Tensor]:
        for _ in range(2):
            if self.finished:
                raise StopIteration
            batch = self.next_in_epoch()
            if batch is not None:
                return batch
            self.next_epoch()
        if self.finished:
            raise StopIteration
        raise ValueError(f"an epoch of {self.urls[0]}... gave no batch: the shards hold no real micro-turns")
