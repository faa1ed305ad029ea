"""Find input bundles and parse them into Conversations (the job's first stage).

    python -c "from pipeline.read import list_inputs; print(list_inputs('demo-out/bundles'))"

Inputs, by what `--input` points at:
- a ``.jsonl`` file: one bundle object per line (paths relative to the manifest's directory), or moshi-finetune's
  own index, ``{"path": "X.wav", "duration": D}`` lines beside X.wav + X.json (pipeline.inputs.moshi);
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
from collections.abc import Callable
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from pipeline.inputs.lhotse import LhotseItem, is_lhotse_manifest, list_lhotse, load_lhotse, read_manifest_bytes
from pipeline.inputs.moshi import is_moshi_index_line, moshi_index_conversation
from pipeline.inputs.safe_read import manifest_lines
from schemas.bundle import BundleError, Conversation, Track, conversation_from_dict, moshi_conversation
from schemas.storage import dir_exists

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


def _lhotse_refs(paths: list[str]) -> list[InputRef]:
    """Inputs from the Lhotse manifests among `paths` (see pipeline.inputs.lhotse)."""
    items = list_lhotse(paths, read_manifest_bytes)  # bounded: regular files only, at most MAX_MANIFEST_BYTES
    return [InputRef(kind=i.kind, origin=i.origin, path=i.path, line=i.line, text=i.text) for i in items]


def _match(pattern: str) -> list[str]:
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def list_inputs(input_path: str) -> list[InputRef]:
    """Every input under `input_path` (a directory or a .jsonl manifest), in a stable order.

    Raises:
        ValueError: when the path does not exist or holds no inputs (names the path and what was looked for).
    """
    if is_lhotse_manifest(input_path) and FileSystems.exists(input_path):
        return _lhotse_refs([input_path])
    if input_path.endswith(".jsonl"):
        if not FileSystems.exists(input_path):
            raise ValueError(f"--input {input_path}: manifest file does not exist")
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

    root = input_path.rstrip("/")
    if not dir_exists(root):  # an object store has no directories: any object under the prefix counts
        raise ValueError(f"--input {input_path}: directory does not exist")
    files = _match(root + "/**")
    by_dir: dict[str, list[str]] = defaultdict(list)
    for path in files:
        by_dir[posixpath.dirname(path)].append(path)

    refs = _lhotse_refs(files)
    lhotse_dirs = sorted({posixpath.dirname(p) + "/" for p in files if is_lhotse_manifest(p)})
    for directory in sorted(by_dir):
        if any((directory + "/").startswith(d) for d in lhotse_dirs):
            continue
        names = {posixpath.basename(p): p for p in by_dir[directory]}
        if "bundle.json" in names:
            refs.append(InputRef(kind="bundle", origin=names["bundle.json"], path=names["bundle.json"]))
            continue
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
    if not refs:
        raise ValueError(
            f"--input {input_path}: found no bundle.json, moshi-finetune pair (X.wav + X.json), Lhotse manifest or "
            "per-speaker audio files; see `microturn run --help` for the input layouts"
        )
    return refs


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
            try:
                obj = json.loads(ref.text)
            except ValueError as e:  # JSONDecodeError, or an integer past Python's digit limit
                raise BundleError("malformed_json", f"manifest line is not valid JSON: {e}") from None
            if isinstance(obj, dict) and isinstance(obj.get("turns"), list) and "tracks" not in obj:
                raise BundleError(
                    "unknown_input",
                    "a Gander conversation (turns, no tracks): `microturn run --input FILE.jsonl` imports it, or "
                    "convert it first with `microturn import gander FILE.jsonl --out BUNDLES_DIR`",
                )
            if is_moshi_index_line(obj):
                return moshi_index_conversation(
                    obj, base=posixpath.dirname(ref.path), origin=ref.origin, read_text=read
                )
            return conversation_from_dict(obj, base=posixpath.dirname(ref.path), origin=ref.origin, read_text=read)
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
