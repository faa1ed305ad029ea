"""The Beam job: input bundles -> micro-turn shards + index/ + manifest.json + rejected.parquet.

    microturn run --input demo-out/bundles --output /tmp/ds --direct_num_workers 2 \
        --direct_running_mode multi_processing

Steps (each a named Beam transform; every failure goes to a tagged `rejected` output with its stage, kind and reason):
ListInputs -> Read -> Dedupe (by conversation id) -> Resume (reuse parts of an interrupted run) -> Decode -> Align
-> Featurise -> Label -> WindowAndWritePart -> (PartBytes -> NumBuckets) -> GroupByBucket -> WriteShards
(each shard, then its index file) -> MergeSummaries -> WriteManifest; AllRejected -> RejectedRuns (sorted runs of
bounded size, with their counts) -> WriteRejected (one merge pass).

The write stage grows with the corpus: the number of shard buckets is derived from the total bytes of all parts
(`--shard_size_mb`; a sum, constant memory) unless `--num_shards` fixes it, a conversation's bucket is a stable
hash of its id, a bucket whose parts exceed the target is cut into several shards in key order, and the manifest
is merged from small per-shard summaries (a CombineGlobally): no step holds the dataset's index rows.

Without --runner the job runs on Beam's local FnApiRunner, constructed on purpose (pipeline/runner/runners.py): Beam's
DirectRunner would first try the Prism runner, which downloads a binary. PortableRunner, Flink, Spark and Dataflow
are used as Beam normally does when --runner names them; runners that mis-route multi-output ParDos are refused
at start. Inputs, work directory and output may be on any Beam file system (s3:// with --s3_endpoint_url ...).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from apache_beam.pvalue import AsSingleton, TaggedOutput

from pipeline.align import AlignConfig, AlignedConversation, align
from pipeline.aligners import AlignerBackend, AlignerConfig, load_backend
from pipeline.aligners.diarize import Diarizer
from pipeline.decode import DecodedConversation, decode_conversation
from pipeline.features import FeaturisedConversation, featurise
from pipeline.inputs.guard import InputPolicy, policy_from_options, read_input
from pipeline.labels import LabelConfig, LabelledConversation, label, overlap_intervals, turn_taking_counts
from pipeline.manifest import (
    ManifestCombineFn,
    config_hash,
    shard_summary,
    write_index_file,
    write_manifest,
)
from pipeline.options import MicroturnOptions, job_config
from pipeline.read import InputRef, ListInputs, check_input, list_inputs
from pipeline.rejects import Rejection, StageError
from pipeline.runner.coders import register_stage_coders
from pipeline.runner.logs import CONVERSATIONS
from pipeline.runner.output_guard import (
    OutputError,
    claim_output,
    disk_error,
    is_job_temporary,
    release_output,
    remove_stale_shards,
    remove_work,
    written_by_earlier_runs,
)
from pipeline.runner.progress import DECODED, DONE, ProgressBar, ProgressFn, wanted
from pipeline.runner.rejected_table import RejectedRunsFn, write_rejected_runs
from pipeline.runner.runners import LOCAL, absolute_local_paths, check_launch, check_runner, make_pipeline
from pipeline.runner.streams import auto_stream_threads
from pipeline.runner.worker_storage import WorkerStorageFn, configure_worker, storage_flags, with_storage
from pipeline.video import VideoConfig
from pipeline.windows import WindowConfig, cut_windows
from pipeline.write import (
    PartInfo,
    finished_part,
    finished_shard,
    parts_digest,
    plan_shards,
    write_json,
    write_part,
    write_shard,
)
from schemas import storage
from schemas.bundle import BundleError, Conversation, sanitise_id
from schemas.shard import shard_for, shard_name
from schemas.tables import INDEX_DIR, index_file_name, read_manifest
from schemas.units import SAMPLE_RATE_HZ

logger = logging.getLogger(__name__)
conversation_log = logging.getLogger(CONVERSATIONS)  # one line per conversation: shown with -v only
REJECTED = "rejected"
NAMESPACE = "microturn"


def _reject(stage: str, origin: str, kind: str, reason: str, conversation_id: str | None = None) -> TaggedOutput:
    """The rejected output for one input; counted in Beam counters ``rejected_{stage}`` and ``rejected_{stage}_{kind}``
    (kind: one of pipeline.rejects.KINDS)."""
    rejection = Rejection(input=origin, stage=stage, kind=kind, reason=reason, conversation_id=conversation_id)
    Metrics.counter(NAMESPACE, f"rejected_{stage}").inc()
    Metrics.counter(NAMESPACE, f"rejected_{stage}_{kind}").inc()
    conversation_log.info("rejected %s at %s (%s): %s", origin, stage, kind, reason)
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

    def process(self, conv: Conversation, work_dir: str) -> Iterator[Any]:
        part = finished_part(part_path(work_dir, conv.id))
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
    stream_threads = 1  # threads for a conversation's per-stream work (set by build(): pipeline.runner.streams)
    reraise: tuple[type[BaseException], ...] = ()  # failures of the machinery, not of the input: fail the bundle

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
        except self.reraise:
            raise
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
    if isinstance(element, FeaturisedConversation):
        return element.aligned.conversation
    return element.featurised.aligned.conversation  # LabelledConversation


class DecodeFn(StageFn):
    stage = "decode"

    def __init__(self, video: VideoConfig) -> None:
        self.video = video

    def apply(self, conv: Conversation) -> DecodedConversation:
        return decode_conversation(conv, self.video, threads=self.stream_threads)


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
    """The perspectives (WindowConfig.perspectives: all or first), and the dMel codes and speech activity of every
    speaker's stream and of each perspective's others mix (pipeline/features.py featurise)."""

    stage = "featurise"

    def __init__(self, perspectives: str) -> None:
        self.perspectives = perspectives

    def apply(self, aligned: AlignedConversation) -> FeaturisedConversation:
        return featurise(aligned, perspectives=self.perspectives, threads=self.stream_threads)


class LabelFn(StageFn):
    """The conversation's turn-taking events and each perspective's labels (pipeline/labels.py label)."""

    stage = "label"

    def __init__(self, config: LabelConfig) -> None:
        self.config = config

    def apply(self, featurised: FeaturisedConversation) -> LabelledConversation:
        return label(featurised, self.config)


def part_path(work_dir: str, conversation_id: str) -> str:
    return f"{work_dir}/parts/{sanitise_id(conversation_id)}.tar"


class WritePartFn(StageFn):
    """Cut a conversation's windows and write them to its part. An OSError (the output file system failing) fails
    the bundle, so that the runner retries it, instead of rejecting the input."""

    stage = "write"
    reraise = (OSError,)

    def __init__(self, config: WindowConfig) -> None:
        self.config = config
        self.work_dir = ""

    def process(self, element: Any, work_dir: str) -> Iterator[Any]:  # type: ignore[override]
        self.work_dir = work_dir  # a side input: the work directory is named after the inputs, listed in the job
        yield from super().process(element)

    def apply(self, labelled: LabelledConversation) -> PartInfo:
        aligned = labelled.featurised.aligned
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
            summary=summary,
        )
        Metrics.counter(NAMESPACE, "conversations_written").inc()
        Metrics.counter(NAMESPACE, "samples_written").inc(part.samples)
        conversation_log.info("wrote %d samples of %s", part.samples, conv.id)
        return part


BUCKET_FILL = 0.75
"""Derived bucket count: the mean bucket holds 3/4 of --shard_size_mb; a bucket over the target is split."""


def num_buckets(total_bytes: int, shard_bytes: int, num_shards: int | None) -> int:
    """Shard buckets: `num_shards` when given, else enough that buckets average BUCKET_FILL of the target size
    (so that few overflow and get split), at least 1."""
    if num_shards is not None:
        return num_shards
    return max(1, math.ceil(total_bytes / (shard_bytes * BUCKET_FILL)))


class WriteShardsFn(WorkerStorageFn):
    """One bucket's parts -> its shard(s), each followed by its index file; yields each shard's small summary.
    A shard finished by an earlier run from the same parts (its sidecar in the work directory) is kept."""

    def __init__(self, output: str, target_bytes: int | None) -> None:
        self.output, self.target_bytes = output, target_bytes
        self.work_dir = ""

    def process(self, item: tuple[int, Sequence[PartInfo]], work_dir: str) -> Iterator[dict[str, Any]]:
        self.work_dir = work_dir
        bucket, parts = item
        for split, group in enumerate(plan_shards(parts, self.target_bytes)):
            yield self._write(shard_name(bucket, split), group)

    def _write(self, name: str, parts: Sequence[PartInfo]) -> dict[str, Any]:
        sidecar = f"{self.work_dir}/shards/{name}.json"
        shard_path, index_path = f"{self.output}/{name}", f"{self.output}/{index_file_name(name)}"
        digest = parts_digest(parts)
        done = finished_shard([shard_path, index_path], sidecar)
        if done is not None and done.get("parts_sha256") == digest:
            Metrics.counter(NAMESPACE, "shards_reused").inc()
            logger.info("shard %s was finished by an earlier run; kept", name)
            return done
        info = write_shard(parts, path=shard_path)
        write_index_file(index_path, info.rows)
        summary = shard_summary(info, parts_sha256=digest)
        write_json(sidecar, summary)
        logger.info("wrote %s: %d samples, %d bytes", name, len(info.rows), info.size_bytes)
        return summary


WORK_DIR = "_work"


class InputsDigestFn(beam.CombineFn):
    """The inputs' origins -> a digest that does not depend on their order (the sum of their sha256 modulo 2^256,
    and their count): names the work directory, in constant memory."""

    def create_accumulator(self) -> tuple[int, int]:
        return 0, 0

    def add_input(self, acc: tuple[int, int], ref: InputRef) -> tuple[int, int]:
        return (
            acc[0] + int(hashlib.sha256(ref.origin.encode("utf-8", "surrogatepass")).hexdigest(), 16)
        ) % 2**256, acc[1] + 1

    def merge_accumulators(self, accs: Iterable[tuple[int, int]]) -> tuple[int, int]:
        total, count = 0, 0
        for a, n in accs:
            total, count = (total + a) % 2**256, count + n
        return total, count

    def extract_output(self, acc: tuple[int, int]) -> str:
        return f"{acc[0]:064x}:{acc[1]}"


def work_dir_for(digest: str, output: str, config: dict) -> str:
    """The work directory of a job: named after its configuration and its inputs (InputsDigestFn), so that a rerun of
    the same job resumes and another job starts afresh."""
    return f"{output}/{WORK_DIR}/{config_hash({**config, 'inputs_digest': digest})[:16]}"


def _threads(fn: StageFn, opts: MicroturnOptions) -> StageFn:
    fn.torch_threads = opts.torch_threads
    fn.stream_threads = opts.stream_threads or auto_stream_threads(
        runner=opts.view_as(StandardOptions).runner,
        num_workers=opts.view_as(DirectOptions).direct_num_workers,
        running_mode=opts.view_as(DirectOptions).direct_running_mode,
    )
    return with_storage(fn, opts)


def _input_stages(
    p: beam.Pipeline, opts: MicroturnOptions, refs: Sequence[InputRef] | None, config: dict
) -> tuple[Any, Any, dict[str, Any]]:
    """List, read and deduplicate the inputs and set aside those a previous run finished: (the listed InputRefs,
    the work directory as a side input, {stage: its tagged outputs} for Read, Dedupe and Resume)."""
    output = opts.output.rstrip("/")
    if refs is None:
        listed = p | "ListInputs" >> ListInputs(opts.input, opts)
    else:
        listed = p | "ListInputs" >> beam.Create(list(refs))
    work_dir = AsSingleton(
        listed
        | "InputsDigest" >> beam.CombineGlobally(InputsDigestFn())
        | "WorkDir" >> beam.Map(work_dir_for, output, config)
    )
    read = listed | "Read" >> beam.ParDo(with_storage(ReadFn(policy_from_options(opts)), opts)).with_outputs(
        REJECTED, main="ok"
    )
    deduped = (
        read.ok | "GroupById" >> beam.GroupByKey() | "Dedupe" >> beam.FlatMap(dedupe).with_outputs(REJECTED, main="ok")
    )
    resumed = deduped.ok | "Resume" >> beam.ParDo(with_storage(ResumeFn(), opts), work_dir).with_outputs(
        "done", main="todo"
    )
    return listed, work_dir, {"read": read, "deduped": deduped, "resumed": resumed}


def _conversation_stages(todo: Any, opts: MicroturnOptions, config: dict, work_dir: Any) -> dict[str, Any]:
    """Decode, align, featurise, label, then window each conversation and write its part: {stage: its tagged
    outputs (ok, REJECTED)} in data-flow order."""
    # The stages' outputs are typed so that Beam codes them with StageValueCoder (see pipeline/runner/coders.py).
    register_stage_coders(DecodedConversation, AlignedConversation, FeaturisedConversation, LabelledConversation)
    decode_fn = _threads(DecodeFn(VideoConfig(**config["video"])), opts)
    decoded = todo | "Decode" >> beam.ParDo(decode_fn).with_output_types(DecodedConversation).with_outputs(
        REJECTED, main="ok"
    )
    align_fn = _threads(AlignFn(AlignConfig(**config["align"]), AlignerConfig(**config["aligner"])), opts)
    aligned = decoded.ok | "Align" >> beam.ParDo(align_fn).with_output_types(AlignedConversation).with_outputs(
        REJECTED, main="ok"
    )
    windows = WindowConfig(**config["windows"])
    featured = aligned.ok | "Featurise" >> beam.ParDo(
        _threads(FeaturiseFn(windows.perspectives), opts)
    ).with_output_types(FeaturisedConversation).with_outputs(REJECTED, main="ok")
    labelled = featured.ok | "Label" >> beam.ParDo(LabelFn(LabelConfig(**config["labels"]))).with_output_types(
        LabelledConversation
    ).with_outputs(REJECTED, main="ok")
    parts = labelled.ok | "WindowAndWritePart" >> beam.ParDo(
        _threads(WritePartFn(windows), opts), work_dir
    ).with_outputs(REJECTED, main="ok")
    return {"decoded": decoded, "aligned": aligned, "featured": featured, "labelled": labelled, "parts": parts}


def _shard_stages(all_parts: Any, opts: MicroturnOptions, config: dict, work_dir: Any) -> Any:
    """Bucket the parts (by a stable hash of the conversation id; the bucket count from their total bytes and
    --shard_size_mb, or --num_shards) and write one shard per bucket: one summary dict per shard."""
    output = opts.output.rstrip("/")
    target = int(config["shard_size_mb"] * 1_000_000)  # bytes
    override = config["num_shards"]
    buckets = (
        all_parts
        | "PartBytes" >> beam.Map(lambda part: part.size_bytes)
        | "TotalBytes" >> beam.CombineGlobally(sum)
        | "NumBuckets" >> beam.Map(num_buckets, target, override)
    )
    return (
        all_parts
        | "KeyByBucket" >> beam.Map(lambda part, n: (shard_for(part.conversation_id, n), part), AsSingleton(buckets))
        | "GroupByBucket" >> beam.GroupByKey()
        | "WriteShards"
        >> beam.ParDo(with_storage(WriteShardsFn(output, None if override is not None else target), opts), work_dir)
    )


def _table_stages(
    p: beam.Pipeline,
    opts: MicroturnOptions,
    config: dict,
    work_dir: Any,
    listed: Any,
    shards: Any,
    rejected: Any,
) -> Any:
    """After every shard: rejected.parquet, then manifest.json; returns the one manifest dict."""
    output = opts.output.rstrip("/")
    flags = storage_flags(opts)  # the S3 options for the Map steps below that write (DoFns carry them: with_storage)
    totals = shards | "MergeSummaries" >> beam.CombineGlobally(ManifestCombineFn())
    # rejected.parquet from sorted runs of bounded size (pipeline/runner/rejected_table.py), after every shard
    # (the totals):
    # a run that fails writing shards leaves no tables
    rejected_summary = (
        rejected
        | "RejectedRuns" >> beam.ParDo(with_storage(RejectedRunsFn("rejected"), opts), work_dir)
        | "RunList" >> beam.combiners.ToList()  # one (path, counts) per RUN_ROWS rejections
        | "WriteRejected"
        >> beam.Map(lambda runs, _: configure_worker(flags) or write_rejected_runs(output, runs), AsSingleton(totals))
    )
    num_inputs = AsSingleton(listed | "CountInputs" >> beam.combiners.Count.Globally())
    return (
        p
        | "Once" >> beam.Create([None])
        | "WriteManifest"
        >> beam.Map(
            lambda _, merged, rejects, n: (
                configure_worker(flags)
                or write_manifest(output, totals=merged, rejected=rejects, num_inputs=n, config=config)
            ),
            AsSingleton(totals),
            AsSingleton(rejected_summary),
            num_inputs,
        )
    )


def build(
    p: beam.Pipeline,
    opts: MicroturnOptions,
    refs: Sequence[InputRef] | None,
    config: dict,
    progress: str | None = None,
) -> dict[str, Any]:
    """Add the job's transforms to `p`; return its named PCollections (for tests' assert_that): `parts` (PartInfo
    written by this run), `reused` (PartInfo of an interrupted run), `shards` (one summary dict per shard:
    pipeline.manifest.shard_summary), `rejected` (Rejection) and `manifest` (the one manifest dict).

    `refs` None (the job): the workers list --input (pipeline.read.ListInputs), so that the graph's size does not
    depend on the number of inputs; a list: exactly these inputs, embedded in the graph (tests). With `progress`
    (a local file: pipeline.runner.progress), each decoded and each finished conversation is recorded there."""
    listed, work_dir, inputs = _input_stages(p, opts, refs, config)
    resumed = inputs["resumed"]
    stages = _conversation_stages(resumed.todo, opts, config, work_dir)
    parts = stages["parts"]
    all_parts = (parts.ok, resumed.done) | "AllParts" >> beam.Flatten()
    shards = _shard_stages(all_parts, opts, config, work_dir)
    rejections = tuple(outputs[REJECTED] for outputs in (inputs["read"], inputs["deduped"], *stages.values()))
    rejected = rejections | "AllRejected" >> beam.Flatten()
    if progress is not None:  # on each stage's own output, so that it is recorded as it happens (not after a Flatten)
        _ = stages["decoded"].ok | "ProgressDecoded" >> beam.ParDo(ProgressFn(progress, DECODED))
        for i, finished in enumerate((parts.ok, resumed.done, *rejections)):
            _ = finished | f"ProgressDone{i}" >> beam.ParDo(ProgressFn(progress, DONE))
    manifest = _table_stages(p, opts, config, work_dir, listed, shards, rejected)
    return {"parts": parts.ok, "reused": resumed.done, "shards": shards, "rejected": rejected, "manifest": manifest}


def sweep_temporary_files(output: str) -> int:
    """Delete the hidden temporary files (pipeline.write.temp_name) that failed or killed attempts left in the
    dataset directory and its index; returns how many. Call it only when no writer is running."""
    found = [
        path
        for pattern in (f"{output}/.*.partial", f"{output}/{INDEX_DIR}/.*.partial")
        for path in storage.list_files(pattern)
        if is_job_temporary(path[len(output) + 1 :])  # a user's own .x.partial stays
    ]
    storage.delete_files(found)
    return len(found)


def _counter(result: Any, name: str) -> int:
    try:
        found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    except (AttributeError, NotImplementedError):  # runners without metrics support
        return 0
    return int(sum(c.committed or 0 for c in found))


class JobResult(dict):
    """What `run` returns: the manifest the job wrote (read back from the output; this object is that dict) and
    `output`, the dataset's location as --output gave it, for the caller's summary (no re-parsing of the flags)."""

    __slots__ = ("output",)

    def __init__(self, manifest: dict, *, output: str) -> None:
        super().__init__(manifest)
        self.output = output


def run(argv: Sequence[str] | None = None, test_pipeline: beam.Pipeline | None = None) -> JobResult:
    """Run the job; returns the manifest it wrote (read back from the output) with the output's location.

    Raises:
        ValueError: bad options or input path; OutputError (a ValueError) when --output is a file, not ours, in use
            by another job, not writable, or runs out of space (pipeline.runner.output_guard).
    """
    options = PipelineOptions(argv)
    runner = check_runner(options.view_as(StandardOptions).runner)  # a runner that would write wrong output: refused
    check_launch(options)  # a job service that cannot start: refused before the output is touched
    for name, path in absolute_local_paths(options).items():
        logger.info("--%s is %s for the workers (a cluster's workers must see it there: shared storage)", name, path)
    storage.configure(options, export=False)  # S3 options (--s3_endpoint_url ...) for the paths read and written below
    opts = options.view_as(MicroturnOptions)
    lock = claim_output(opts.output, overwrite=opts.overwrite)
    try:
        earlier = written_by_earlier_runs(opts.output)  # what stale-shard removal may delete: the job's own files
        show = test_pipeline is None and wanted(opts.no_progress, local_runner=runner is None or runner in LOCAL)
        manifest = _run(options, opts, test_pipeline, progress=show)
        remove_stale_shards(opts.output.rstrip("/"), [s["name"] for s in manifest["shards"]], earlier)
    except Exception as e:
        if (err := disk_error(e)) is not None:
            raise OutputError(
                f"--output {opts.output}: {err.strerror}; the job stopped (free space, then rerun the same command "
                "to resume)"
            ) from e
        raise
    finally:
        release_output(lock)
    return JobResult(manifest, output=opts.output)


def _run(
    options: PipelineOptions, opts: MicroturnOptions, test_pipeline: beam.Pipeline | None, *, progress: bool = False
) -> dict:
    config = job_config(opts)
    check_input(opts.input)  # the inputs themselves are listed by the workers (ListInputs)
    output = opts.output.rstrip("/")
    p = test_pipeline if test_pipeline is not None else make_pipeline(options)
    if progress:  # the bar's total: the launcher lists the inputs only for it (the graph never holds them)
        with ProgressBar(len(list_inputs(opts.input))) as bar:
            build(p, opts, None, config, progress=bar.path)
            result = p.run()
            result.wait_until_finish()
    else:
        build(p, opts, None, config)
        result = p.run()
        result.wait_until_finish()
    swept = sweep_temporary_files(output)
    if swept:
        logger.info("removed %d temporary file(s) left by failed attempts", swept)
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
