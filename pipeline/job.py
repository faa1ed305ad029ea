"""The Beam job: input bundles -> micro-turn shards + index.parquet + manifest.json + rejected.parquet.

    microturn run --input demo-out/bundles --output /tmp/ds --direct_num_workers 2 \
        --direct_running_mode multi_processing

Steps (each a named Beam transform; every failure goes to a tagged `rejected` output with its stage, kind and reason):
ListInputs -> Read -> Dedupe (by conversation id) -> Resume (reuse parts of an interrupted run) -> Decode -> Align
-> Featurise -> Label -> WindowAndWritePart -> GroupByShard -> WriteShard -> WriteTables.

Without --runner the job runs on Beam's local FnApiRunner, constructed on purpose (pipeline/runners.py): Beam's
DirectRunner would first try the Prism runner, which downloads a binary. PortableRunner, Flink, Spark and Dataflow
are used as Beam normally does when --runner names them; runners that mis-route multi-output ParDos are refused
at start. Inputs, work directory and output may be on any Beam file system (s3:// with --s3_endpoint_url ...).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.pvalue import AsSingleton, TaggedOutput

from pipeline.align import AlignConfig, AlignedConversation, align
from pipeline.aligners import AlignerBackend, AlignerConfig, load_backend
from pipeline.aligners.diarize import Diarizer
from pipeline.decode import DecodedConversation, decode_conversation
from pipeline.features import dmel_codes
from pipeline.input_guard import InputPolicy, policy_from_options, read_input
from pipeline.labels import LabelConfig, detect_events, ipus, overlap_intervals, turn_taking_counts
from pipeline.manifest import config_hash, write_tables
from pipeline.options import MicroturnOptions, job_config
from pipeline.output_guard import (
    OutputError,
    claim_output,
    disk_error,
    release_output,
    remove_stale_shards,
    remove_work,
)
from pipeline.read import InputRef, list_inputs
from pipeline.rejects import Rejection, StageError
from pipeline.runners import check_runner, make_pipeline
from pipeline.video import VideoConfig
from pipeline.windows import LabelledConversation, WindowConfig, cut_windows
from pipeline.worker_storage import WorkerStorageFn, configure_worker, storage_flags, with_storage
from pipeline.write import (
    PartInfo,
    finished_part,
    finished_shard,
    save_shard_info,
    write_part,
    write_shard,
)
from schemas import storage
from schemas.bundle import BundleError, Conversation, sanitise_id
from schemas.shard import shard_for, shard_name
from schemas.tables import read_manifest
from schemas.units import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)
REJECTED = "rejected"
NAMESPACE = "microturn"


def _reject(stage: str, origin: str, kind: str, reason: str, conversation_id: str | None = None) -> TaggedOutput:
    """The rejected output for one input; counted in Beam counters ``rejected_{stage}`` and ``rejected_{stage}_{kind}``
    (kind: one of pipeline.rejects.KINDS)."""
    rejection = Rejection(input=origin, stage=stage, kind=kind, reason=reason, conversation_id=conversation_id)
    Metrics.counter(NAMESPACE, f"rejected_{stage}").inc()
    Metrics.counter(NAMESPACE, f"rejected_{stage}_{kind}").inc()
    logger.warning("rejected %s at %s (%s): %s", origin, stage, kind, reason)
    return TaggedOutput(REJECTED, rejection)


class ReadFn(WorkerStorageFn):
    def __init__(self, policy: InputPolicy | None = None) -> None:
        self.policy = policy

    def process(self, ref: InputRef) -> Iterator[Any]:
        try:
            conv = read_input(ref, self.policy)  # any failure of one input is a BundleError with a kind
        except BundleError as e:
            yield _reject("read", ref.origin, e.kind, str(e))
            return
        yield sanitise_id(conv.id), conv  # by key: two ids with one sample key must not both be written


def dedupe(item: tuple[str, Sequence[Conversation]]) -> Iterator[Any]:
    """Keep the first conversation (by origin) of each sample key; reject the others as duplicates (the same id) or
    collisions (another id with the same key)."""
    key, convs = item
    ordered = sorted(convs, key=lambda c: c.origin)
    first = ordered[0]
    yield first
    for c in ordered[1:]:
        if c.id == first.id:
            kind, reason = "duplicate_id", f"duplicate conversation id {c.id!r}, already given by {first.origin}"
        else:
            kind = "id_collision"
            reason = f"conversation id {c.id!r} has the same sample key {key!r} as id {first.id!r} of {first.origin}"
        yield _reject("read", c.origin, kind, reason, c.id)


class ResumeFn(WorkerStorageFn):
    """Reuse a part that an interrupted run finished; pass the rest on."""

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir

    def process(self, conv: Conversation) -> Iterator[Any]:
        part = finished_part(part_path(self.work_dir, conv.id))
        if part is not None:
            Metrics.counter(NAMESPACE, "parts_reused").inc()
            yield TaggedOutput("done", part)
        else:
            yield conv


class StageFn(WorkerStorageFn):
    """One pipeline stage over a conversation: `apply` does the work; any failure of one input becomes a rejection
    with the stage, a kind and a readable reason (a BundleError or StageError gives its own kind; any other
    exception is kind ``unexpected_error`` and logs its traceback), so one bad file never stops the job."""

    stage = ""
    torch_threads = 0  # > 0: torch intra-op threads in this worker (set by build() from --torch_threads)

    def setup(self) -> None:
        super().setup()
        if self.torch_threads > 0:
            import torch

            torch.set_num_threads(self.torch_threads)

    def apply(self, element: Any) -> Any:
        raise NotImplementedError

    def process(self, element: Any) -> Iterator[Any]:
        try:
            result = self.apply(element)
        except (BundleError, StageError) as e:
            conv = _conversation_of(element)
            yield _reject(self.stage, conv.origin, e.kind, str(e), conv.id)
            return
        except Exception as e:  # noqa: BLE001 - dead-letter output: the input is rejected with its reason
            if disk_error(e) is not None:  # the output's fault (out of space, read-only), not the input's: stop
                raise
            conv = _conversation_of(element)
            logger.exception("unexpected error at %s on %s", self.stage, conv.origin)
            yield _reject(self.stage, conv.origin, "unexpected_error", f"unexpected {type(e).__name__}: {e}", conv.id)
            return
        yield result


def _conversation_of(element: Any) -> Conversation:
    if isinstance(element, Conversation):
        return element
    if isinstance(element, DecodedConversation):
        return element.conversation
    if isinstance(element, AlignedConversation):
        return element.conversation
    if isinstance(element, tuple):
        return _conversation_of(element[0])
    return element.aligned.conversation  # LabelledConversation


class DecodeFn(StageFn):
    stage = "decode"

    def __init__(self, video: VideoConfig) -> None:
        self.video = video

    def apply(self, conv: Conversation) -> DecodedConversation:
        return decode_conversation(conv, self.video)


class AlignFn(StageFn):
    """Align; the aligner's and the diarization pipeline's models load once per worker, in `setup`."""

    stage = "align"

    def __init__(self, config: AlignConfig, aligner: AlignerConfig | None = None) -> None:
        self.config, self.aligner = config, aligner or AlignerConfig()
        self.backend: AlignerBackend | None = None
        self.diarizer: Diarizer | None = None

    def setup(self) -> None:
        super().setup()
        self.backend = load_backend(self.aligner)
        if self.aligner.diarize_model:
            self.diarizer = Diarizer(self.aligner.diarize_model, device=self.aligner.device)

    def apply(self, decoded: DecodedConversation) -> AlignedConversation:
        return align(decoded, self.config, backend=self.backend, diarizer=self.diarizer)


class FeaturiseFn(StageFn):
    stage = "featurise"

    def apply(self, aligned: AlignedConversation) -> tuple[AlignedConversation, dict]:
        """dMel codes of every speaker's stream."""
        return aligned, {s: dmel_codes(pcm) for s, pcm in aligned.streams.items()}


class LabelFn(StageFn):
    stage = "label"

    def __init__(self, config: LabelConfig) -> None:
        self.config = config

    def apply(self, item: tuple[AlignedConversation, dict]) -> LabelledConversation:
        aligned, dmel = item
        conv = aligned.conversation
        units = ipus(conv.speakers, words=conv.words, segments=conv.segments, config=self.config)
        return LabelledConversation(aligned=aligned, dmel=dmel, events=detect_events(units, self.config))


def part_path(work_dir: str, conversation_id: str) -> str:
    return f"{work_dir}/parts/{sanitise_id(conversation_id)}.tar"


class WritePartFn(StageFn):
    stage = "write"

    def __init__(self, work_dir: str, config: WindowConfig, num_shards: int) -> None:
        self.work_dir, self.config, self.num_shards = work_dir, config, num_shards

    def apply(self, labelled: LabelledConversation) -> PartInfo:
        aligned = labelled.aligned
        conv = aligned.conversation
        summary = {
            "conversation_id": conv.id,
            "conversation_key": sanitise_id(conv.id),
            "duration_s": aligned.num_samples / SAMPLE_RATE_HZ,
            "speakers": list(conv.speakers),
            "source": conv.source,
            "licence": conv.licence,
            "video": None if aligned.video is None else aligned.video.info,
            "alignment": dict(aligned.alignment),
            "turn_taking": turn_taking_counts(labelled.events, overlap_intervals(aligned.speech)),
        }
        part = write_part(
            cut_windows(labelled, self.config),
            path=part_path(self.work_dir, conv.id),
            conversation_id=conv.id,
            conversation_key=sanitise_id(conv.id),
            shard=shard_for(conv.id, self.num_shards),
            summary=summary,
        )
        Metrics.counter(NAMESPACE, "conversations_written").inc()
        Metrics.counter(NAMESPACE, "samples_written").inc(len(part.rows))
        logger.info("wrote %d samples of %s", len(part.rows), conv.id)
        return part


class WriteShardFn(WorkerStorageFn):
    def __init__(self, output: str, work_dir: str) -> None:
        self.output, self.work_dir = output, work_dir

    def process(self, item: tuple[int, Sequence[PartInfo]]) -> Iterator[Any]:
        shard, parts = item
        name = shard_name(shard)
        sidecar = f"{self.work_dir}/shards/{name}.json"
        done = finished_shard(f"{self.output}/{name}", sidecar)
        if done is not None:
            Metrics.counter(NAMESPACE, "shards_reused").inc()
            logger.info("shard %s was finished by an earlier run; kept", name)
            yield done
            return
        info = write_shard(parts, path=f"{self.output}/{name}")
        save_shard_info(sidecar, info)
        logger.info("wrote %s: %d samples, %d bytes", name, len(info.rows), info.size_bytes)
        yield info


WORK_DIR = "_work"


def _threads(fn: StageFn, opts: MicroturnOptions) -> StageFn:
    fn.torch_threads = opts.torch_threads
    return with_storage(fn, opts)


def build(p: beam.Pipeline, opts: MicroturnOptions, refs: Sequence[InputRef], config: dict) -> dict[str, Any]:
    """Add the job's transforms to `p`; return its named PCollections (for tests' assert_that): `parts` (PartInfo
    written by this run), `reused` (PartInfo of an interrupted run), `shards` (ShardInfo), `rejected` (Rejection)
    and `manifest` (the one manifest dict)."""
    output = opts.output.rstrip("/")
    work_dir = f"{output}/{WORK_DIR}/{config_hash({**config, 'inputs': [r.origin for r in refs]})[:16]}"
    labels = LabelConfig(**config["labels"])
    windows = WindowConfig(**config["windows"])
    read = (
        p
        | "ListInputs" >> beam.Create(list(refs))
        | "Read" >> beam.ParDo(with_storage(ReadFn(policy_from_options(opts)), opts)).with_outputs(REJECTED, main="ok")
    )
    deduped = (
        read.ok | "GroupById" >> beam.GroupByKey() | "Dedupe" >> beam.FlatMap(dedupe).with_outputs(REJECTED, main="ok")
    )
    resumed = deduped.ok | "Resume" >> beam.ParDo(with_storage(ResumeFn(work_dir), opts)).with_outputs(
        "done", main="todo"
    )
    decode_fn = _threads(DecodeFn(VideoConfig(**config["video"])), opts)
    decoded = resumed.todo | "Decode" >> beam.ParDo(decode_fn).with_outputs(REJECTED, main="ok")
    aligned = decoded.ok | "Align" >> beam.ParDo(
        _threads(AlignFn(AlignConfig(**config["align"]), AlignerConfig(**config["aligner"])), opts)
    ).with_outputs(REJECTED, main="ok")
    featured = aligned.ok | "Featurise" >> beam.ParDo(_threads(FeaturiseFn(), opts)).with_outputs(REJECTED, main="ok")
    labelled = featured.ok | "Label" >> beam.ParDo(LabelFn(labels)).with_outputs(REJECTED, main="ok")
    parts = labelled.ok | "WindowAndWritePart" >> beam.ParDo(
        _threads(WritePartFn(work_dir, windows, opts.num_shards), opts)
    ).with_outputs(REJECTED, main="ok")
    shards = (
        (parts.ok, resumed.done)
        | "AllParts" >> beam.Flatten()
        | "KeyByShard" >> beam.Map(lambda part: (part.shard, part))
        | "GroupByShard" >> beam.GroupByKey()
        | "WriteShard" >> beam.ParDo(with_storage(WriteShardFn(output, work_dir), opts))
    )
    rejected = (
        read[REJECTED],
        deduped[REJECTED],
        decoded[REJECTED],
        aligned[REJECTED],
        featured[REJECTED],
        labelled[REJECTED],
        parts[REJECTED],
    ) | "AllRejected" >> beam.Flatten()
    num_inputs = len(refs)
    flags = storage_flags(opts)
    manifest = (
        p
        | "Once" >> beam.Create([None])
        | "WriteTables"
        >> beam.Map(
            lambda _, shard_list, reject_list: (
                configure_worker(flags)
                or write_tables(output, shards=shard_list, rejected=reject_list, num_inputs=num_inputs, config=config)
            ),
            AsSingleton(shards | "ShardList" >> beam.combiners.ToList()),
            AsSingleton(rejected | "RejectedList" >> beam.combiners.ToList()),
        )
    )
    return {"parts": parts.ok, "reused": resumed.done, "shards": shards, "rejected": rejected, "manifest": manifest}


def _counter(result: Any, name: str) -> int:
    try:
        found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    except (AttributeError, NotImplementedError):  # runners without metrics support
        return 0
    return int(sum(c.committed or 0 for c in found))


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> dict:
    """Run the job; returns the manifest it wrote (read back from the output).

    Raises:
        ValueError: bad options or input path; OutputError (a ValueError) when --output is a file, not ours, in use
            by another job, not writable, or runs out of space (pipeline.output_guard).
    """
    options = PipelineOptions(argv)
    check_runner(options.view_as(StandardOptions).runner)  # a runner that would write wrong output: refused now
    storage.configure(options, export=False)  # S3 options (--s3_endpoint_url ...) for the paths read and written below
    opts = options.view_as(MicroturnOptions)
    lock = claim_output(opts.output, overwrite=opts.overwrite)
    try:
        manifest = _run(options, opts, test_pipeline)
        remove_stale_shards(opts.output.rstrip("/"), [s["name"] for s in manifest["shards"]])
    except Exception as e:
        if (err := disk_error(e)) is not None:
            raise OutputError(
                f"--output {opts.output}: {err.strerror}; the job stopped (free space, then rerun the same command "
                "to resume)"
            ) from e
        raise
    finally:
        release_output(lock)
    return manifest


def _run(options: PipelineOptions, opts: MicroturnOptions, test_pipeline: beam.Pipeline | None) -> dict:
    config = job_config(opts)
    refs = list_inputs(opts.input)
    logger.info("%d inputs under %s", len(refs), opts.input)
    output = opts.output.rstrip("/")
    p = test_pipeline if test_pipeline is not None else make_pipeline(options)
    build(p, opts, refs, config)
    result = p.run()
    result.wait_until_finish()
    reused = {name: _counter(result, name) for name in ("parts_reused", "shards_reused")}
    if any(reused.values()):
        logger.info(
            "resumed %d finished conversation(s) and %d finished shard(s) from an earlier run",
            reused["parts_reused"],
            reused["shards_reused"],
        )
    manifest = read_manifest(output)
    if not opts.keep_work:
        remove_work(output, WORK_DIR)  # this job's work directories only
    return manifest
