"""Find input bundles and parse them into Conversations (the job's first stage).

    python -c "from pipeline.read import list_inputs; print(list_inputs('demo-out/bundles'))"

Inputs, by what `--input` points at:
- a ``.jsonl`` file: one bundle object per line (paths relative to the manifest's directory), or moshi-finetune's
  own index, ``{"path": "X.wav", "duration": D}`` lines beside X.wav + X.json (pipeline.inputs.moshi), or Gander's
  interaction JSONL, one conversation of turns per line (pipeline.inputs.gander);
- a directory: every ``bundle.json`` under it; every moshi-finetune pair ``X.wav`` + ``X.json``
  (``{"alignments": ...}``); and every directory of plain per-speaker audio files with no bundle.json
  (one conversation per directory, speaker = file stem, no transcript);
- Lhotse manifests (a directory holding ``{corpus}_recordings_{part}.jsonl.gz`` + ``..._supervisions_...``, or
  ``cuts*.jsonl.gz``; or a cuts file itself): one conversation per recording or cut (`pipeline.inputs.lhotse`); the
  audio files under such a directory are the manifests' own, not inputs of their own.

Paths go through Beam's FileSystems, so any file system Beam knows (local, gs://, s3://, ...) works.
"""

from __future__ import annotations

import json
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton

from pipeline.inputs.gander import gander_conversation
from pipeline.inputs.lhotse import LhotseItem, is_lhotse_manifest, list_lhotse, load_lhotse, read_manifest_bytes
from pipeline.inputs.moshi import is_moshi_index_line, moshi_index_conversation
from pipeline.inputs.safe_read import DEFAULT_MAX_TEXT_BYTES, check_regular_file, manifest_lines
from pipeline.runner.worker_storage import WorkerStorageFn, storage_flags
from schemas.bundle import BundleError, Conversation, Track, conversation_from_dict, moshi_conversation
from schemas.gander import is_gander
from schemas.storage import dir_exists, size

UNDECODABLE_LINE = "undecodable_line"
"""InputRef kind of a manifest line that is not UTF-8 (`text` holds the bad byte's offset)."""

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm")


@dataclass(frozen=True, slots=True, kw_only=True)
class InputRef:
    """One input of the job, before it is read. `kind` is bundle | manifest_line | moshi | speaker_files."""

    kind: str
    origin: str  # what the rejected list calls it
    path: str  # bundle.json, manifest file, moshi .json, or the speaker-files directory
    line: int = 0  # 1-based manifest line
    text: str = ""  # the manifest line itself (lhotse_*: see pipeline.inputs.lhotse.LhotseItem)
    audio: tuple[str, ...] = ()  # moshi wav or per-speaker files


def read_bytes(path: str) -> bytes:
    """A whole file, through Beam's FileSystems (no decompression)."""
    with FileSystems.open(path, mime_type="application/octet-stream", compression_type="uncompressed") as f:
        return f.read()


def read_text(path: str) -> str:
    """A whole file as UTF-8 text, through Beam's FileSystems."""
    return read_bytes(path).decode("utf-8")


def _lhotse_refs(paths: Iterable[str]) -> list[InputRef]:
    """Inputs from the Lhotse manifests among `paths` (see pipeline.inputs.lhotse)."""
    items = list_lhotse(sorted(paths), read_manifest_bytes)  # bounded: regular files only, at most MAX_MANIFEST_BYTES
    return [InputRef(kind=i.kind, origin=i.origin, path=i.path, line=i.line, text=i.text) for i in items]


def _match(pattern: str) -> list[str]:
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def _manifest_refs(input_path: str) -> list[InputRef]:
    """One input per non-blank line of the .jsonl manifest `input_path`."""
    return [  # a line that is not UTF-8 is one input, rejected by pipeline.inputs.guard.read_input
        InputRef(
            kind="manifest_line" if text is not None else UNDECODABLE_LINE,
            origin=f"{input_path}:{i}",
            path=input_path,
            line=i,
            text=text if text is not None else str(bad_byte),
        )
        for i, text, bad_byte in manifest_lines(input_path)
    ]


def _lhotse_dirs(files: Iterable[str]) -> list[str]:
    """The directories (with a trailing /) that hold Lhotse manifests: their audio is the manifests' own."""
    return sorted({posixpath.dirname(p) + "/" for p in files if is_lhotse_manifest(p)})


def _directory_refs(directory: str, paths: Iterable[str], lhotse_dirs: Sequence[str] = ()) -> list[InputRef]:
    """The inputs of one directory from the files directly in it: its bundle.json, or its moshi-finetune pairs, or
    its per-speaker audio files; none under a directory of Lhotse manifests."""
    if any((directory + "/").startswith(d) for d in lhotse_dirs):
        return []
    names = {posixpath.basename(p): p for p in paths}
    if "bundle.json" in names:
        return [InputRef(kind="bundle", origin=names["bundle.json"], path=names["bundle.json"])]
    refs = []
    audio = sorted(p for n, p in names.items() if n.lower().endswith(AUDIO_EXTENSIONS))
    moshi_wavs = set()
    for name, path in sorted(names.items()):
        stem, ext = posixpath.splitext(name)
        if ext == ".json" and stem + ".wav" in names:
            wav = names[stem + ".wav"]
            moshi_wavs.add(wav)
            refs.append(InputRef(kind="moshi", origin=path, path=path, audio=(wav,)))
    rest = tuple(p for p in audio if p not in moshi_wavs)
    if rest and not moshi_wavs:
        refs.append(InputRef(kind="speaker_files", origin=directory, path=directory, audio=rest))
    return refs


def _file_refs(files: Sequence[str]) -> list[InputRef]:
    """Every input among `files` (all the files under a directory)."""
    by_dir: dict[str, list[str]] = defaultdict(list)
    for path in files:
        by_dir[posixpath.dirname(path)].append(path)
    lhotse_dirs = _lhotse_dirs(files)
    refs = _lhotse_refs(files)
    for directory in sorted(by_dir):
        refs += _directory_refs(directory, by_dir[directory], lhotse_dirs)
    return refs


def _no_inputs(input_path: str) -> ValueError:
    return ValueError(
        f"--input {input_path}: found no bundle.json, moshi-finetune pair (X.wav + X.json), Lhotse manifest or "
        "per-speaker audio files; see `microturn run --help` for the input layouts"
    )


def list_inputs(input_path: str) -> list[InputRef]:
    """Every input under `input_path` (a directory or a .jsonl manifest), in a stable order, listed in this process
    (the job lists them on its workers instead: `ListInputs`).

    Raises:
        ValueError: when the path does not exist or holds no inputs (names the path and what was looked for).
    """
    if is_lhotse_manifest(input_path) and FileSystems.exists(input_path):
        return _lhotse_refs([input_path])
    if input_path.endswith(".jsonl"):
        if not FileSystems.exists(input_path):
            raise ValueError(f"--input {input_path}: manifest file does not exist")
        return _manifest_refs(input_path)
    root = input_path.rstrip("/")
    if not dir_exists(root):  # an object store has no directories: any object under the prefix counts
        raise ValueError(f"--input {input_path}: directory does not exist")
    refs = _file_refs(_match(root + "/**"))
    if not refs:
        raise _no_inputs(input_path)
    return refs


PROBE_FILES = 1_000
"""Files `check_input` lists at most: enough to refuse a directory without inputs, not to list a corpus."""


def check_input(input_path: str, *, max_manifest_bytes: int = 16 * DEFAULT_MAX_TEXT_BYTES) -> None:
    """The launcher's checks on --input, without listing a corpus: the path exists; a manifest is a regular file
    within `max_manifest_bytes`; a directory of fewer than PROBE_FILES files holds inputs.

    Raises:
        ValueError: as `list_inputs` does.
    """
    if is_lhotse_manifest(input_path) and FileSystems.exists(input_path):
        return
    if input_path.endswith(".jsonl"):
        if not FileSystems.exists(input_path):
            raise ValueError(f"--input {input_path}: manifest file does not exist")
        try:
            check_regular_file(input_path, "manifest")
        except BundleError as e:
            raise ValueError(f"--input {input_path}: {e}") from None
        if size(input_path) > max_manifest_bytes:
            raise ValueError(
                f"--input {input_path}: {input_path} is larger than the limit of {max_manifest_bytes} bytes "
                "(--max_text_mb)"
            )
        return
    root = input_path.rstrip("/")
    if not dir_exists(root):
        raise ValueError(f"--input {input_path}: directory does not exist")
    found = FileSystems.match([root + "/**"], limits=[PROBE_FILES])[0].metadata_list
    if len(found) < PROBE_FILES and not _file_refs(sorted(m.path for m in found)):
        raise _no_inputs(input_path)


class _ListFn(WorkerStorageFn):
    """`fn(element)`'s items, on a worker whose FileSystems knows the job's S3 settings."""

    def __init__(self, fn: Callable[[Any], Iterable[Any]]) -> None:
        self.fn = fn

    def process(self, element: Any) -> Iterator[Any]:
        yield from self.fn(element)


def _wire(path: str) -> bytes:
    """A path as it travels between the listing's steps: bytes, since Beam's str coders take UTF-8 only and a file
    name may be any bytes (os.fsdecode gives surrogates)."""
    return path.encode("utf-8", "surrogatepass")


def _unwire(data: bytes) -> str:
    return data.decode("utf-8", "surrogatepass")


def _matched(root: bytes) -> Iterator[bytes]:
    for m in FileSystems.match([_unwire(root).rstrip("/") + "/**"])[0].metadata_list:
        yield _wire(m.path)


def _directory_inputs(item: tuple[bytes, Iterable[bytes]], lhotse: Sequence[bytes]) -> list[InputRef]:
    directory, paths = item
    lhotse_dirs = _lhotse_dirs(_unwire(p) for p in lhotse)
    return _directory_refs(_unwire(directory), [_unwire(p) for p in paths], lhotse_dirs)


class ListInputs(beam.PTransform):
    """--input -> its InputRefs, listed by the workers: the job graph holds `input_path` alone, whatever the number
    of inputs (a directory is matched, a manifest read, on a worker), and a Reshuffle spreads the inputs over the
    workers. The same inputs as `list_inputs`, in no particular order."""

    def __init__(self, input_path: str, options: Any = None) -> None:
        super().__init__()
        self.input_path = input_path
        self.settings = storage_flags(options)  # not the options themselves: they may hold credentials

    def _fn(self, fn: Callable[[Any], Iterable[Any]]) -> _ListFn:
        list_fn = _ListFn(fn)
        list_fn.storage_flags = self.settings
        return list_fn

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        path = pbegin | "InputPath" >> beam.Create([_wire(self.input_path)])
        if is_lhotse_manifest(self.input_path) and FileSystems.exists(self.input_path):
            refs = path | "LhotseManifest" >> beam.ParDo(self._fn(lambda p: _lhotse_refs([_unwire(p)])))
        elif self.input_path.endswith(".jsonl"):
            refs = path | "ManifestLines" >> beam.ParDo(self._fn(lambda p: _manifest_refs(_unwire(p))))
        else:
            files = path | "MatchFiles" >> beam.ParDo(self._fn(_matched))
            lhotse = (
                files
                | "LhotseManifests" >> beam.Filter(lambda p: is_lhotse_manifest(_unwire(p)))
                | "AllLhotse" >> beam.combiners.ToList()
            )
            in_dirs = (
                files
                | "ByDirectory" >> beam.Map(lambda p: (_wire(posixpath.dirname(_unwire(p))), p))
                | "GroupByDirectory" >> beam.GroupByKey()
                | "DirectoryInputs" >> beam.FlatMap(_directory_inputs, AsSingleton(lhotse))
            )
            in_lhotse = lhotse | "LhotseInputs" >> beam.ParDo(
                self._fn(lambda paths: _lhotse_refs([_unwire(p) for p in paths]) if paths else [])
            )
            refs = (in_dirs, in_lhotse) | "AllInputs" >> beam.Flatten()
        return refs | "Spread" >> beam.Reshuffle()


def load_conversation(ref: InputRef, read: Callable[[str], str] = read_text) -> Conversation:
    """Parse one input into a Conversation (reads its transcript files with `read`; the job passes a bounded,
    confined reader: pipeline.inputs.guard.read_input).

    Raises:
        BundleError: with a kind (schemas.bundle.BUNDLE_KINDS) and a readable reason (malformed JSON, missing
            fields, unreadable transcript ...).
    """
    try:
        if ref.kind == "bundle":
            try:
                obj = json.loads(read(ref.path))
            except ValueError as e:  # JSONDecodeError, or an integer past Python's digit limit
                raise BundleError("malformed_json", f"bundle.json is not valid JSON: {e}") from None
            return conversation_from_dict(obj, base=posixpath.dirname(ref.path), origin=ref.origin, read_text=read)
        if ref.kind == "manifest_line":
            base = posixpath.dirname(ref.path)
            try:
                obj = json.loads(ref.text)
            except ValueError as e:  # JSONDecodeError, or an integer past Python's digit limit
                raise BundleError("malformed_json", f"manifest line is not valid JSON: {e}") from None
            if is_gander(obj):
                stem = posixpath.splitext(posixpath.basename(ref.path))[0]
                return gander_conversation(
                    obj, base=base, origin=ref.origin, default_id=f"{stem}-{ref.line}", read_text=read
                )
            if is_moshi_index_line(obj):
                return moshi_index_conversation(obj, base=base, origin=ref.origin, read_text=read)
            return conversation_from_dict(obj, base=base, origin=ref.origin, read_text=read)
        if ref.kind == "moshi":
            return moshi_conversation(wav_path=ref.audio[0], json_text=read(ref.path), origin=ref.origin)
        if ref.kind == "speaker_files":
            tracks = tuple(Track(speaker=posixpath.splitext(posixpath.basename(p))[0], path=p) for p in ref.audio)
            return Conversation(id=posixpath.basename(ref.path), origin=ref.origin, tracks=tracks)
        if ref.kind.startswith("lhotse_"):
            return load_lhotse(
                LhotseItem(kind=ref.kind, origin=ref.origin, path=ref.path, line=ref.line, text=ref.text)
            )
    except (OSError, UnicodeDecodeError) as e:
        raise BundleError("unreadable_file", f"cannot read a file of the bundle: {e}") from None
    raise BundleError("unknown_input", f"unknown input kind {ref.kind!r}")
