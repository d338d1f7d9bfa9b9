"""A model store entry's sha256 manifest: every file's size and digest, so a node can prove its copy before a climb.

A push writes it into the entry as `.ladder-manifest.json`. Two checks: `full` re-hashes every byte (after a copy,
or on request); the cheap one compares only presence and sizes (before a climb, and when a push asks a node whether
it already has the model), since hashing a many-GB model takes a Jetson tens of seconds. The manifest's own
`sha256` is over a canonical JSON of its files, so two nodes agree on a version by comparing one string.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

MANIFEST_FILE = ".ladder-manifest.json"


class FileDigest(BaseModel):
    size: int
    sha256: str


class Manifest(BaseModel):
    """Relative path (posix) → size and sha256, and the sha256 of that mapping: the entry's version."""

    files: dict[str, FileDigest]
    sha256: str

    @classmethod
    def of(cls, files: dict[str, FileDigest]) -> Manifest:
        return cls(files=files, sha256=files_digest(files))

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def files_digest(files: dict[str, FileDigest]) -> str:
    """The sha256 of the files mapping as canonical JSON (sorted keys, no spaces)."""
    canonical = {rel: d.model_dump() for rel, d in sorted(files.items())}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def entry_files(directory: Path) -> list[str]:
    """The entry's files as sorted posix relative paths, without the manifest itself."""
    found = (p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    return sorted(rel for rel in found if rel != MANIFEST_FILE)


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def build_manifest(directory: str | Path) -> Manifest:
    """Hash every file of the entry (everything but the manifest file)."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    files = {
        rel: FileDigest(size=(root / rel).stat().st_size, sha256=file_sha256(root / rel)) for rel in entry_files(root)
    }
    return Manifest.of(files)


def verify(directory: str | Path, manifest: Manifest, full: bool = True) -> list[str]:
    """What is wrong with the entry against the manifest, one line per file ("config.json: sha256 differs",
    "…: missing", "…: size 10 != 12", "…: not in the manifest"); empty when it matches. `full=False` skips hashing."""
    root = Path(directory)
    problems = [p for rel, want in sorted(manifest.files.items()) if (p := _check_file(root / rel, rel, want, full))]
    extra = set(entry_files(root)) - set(manifest.files) if root.is_dir() else set()
    return problems + [f"{rel}: not in the manifest" for rel in sorted(extra)]


def _check_file(path: Path, rel: str, want: FileDigest, full: bool) -> str | None:
    if not path.is_file():
        return f"{rel}: missing"
    size = path.stat().st_size
    if size != want.size:
        return f"{rel}: size {size} != {want.size}"
    if full and file_sha256(path) != want.sha256:
        return f"{rel}: sha256 differs"
    return None


def read_manifest(directory: str | Path) -> Manifest | None:
    """The entry's stored manifest; None when it has none or it does not parse, or its sha256 does not match."""
    path = Path(directory) / MANIFEST_FILE
    try:
        manifest = Manifest.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.sha256 == files_digest(manifest.files) else None


def write_manifest(directory: str | Path, manifest: Manifest) -> Path:
    path = Path(directory) / MANIFEST_FILE
    path.write_text(manifest.model_dump_json(indent=1) + "\n")
    return path


def current_manifest(directory: str | Path) -> Manifest:
    """The entry's manifest, rebuilt and stored when it is absent, or stale: a file newer than it, or sizes that no
    longer match. Hashing a large model costs seconds, so a push re-uses the stored one when nothing changed."""
    root = Path(directory)
    stored = read_manifest(root)
    if stored is not None and not verify(root, stored, full=False) and not _changed_since(root, root / MANIFEST_FILE):
        return stored
    manifest = build_manifest(root)
    write_manifest(root, manifest)
    return manifest


def _changed_since(root: Path, marker: Path) -> bool:
    since = marker.stat().st_mtime_ns
    return any((root / rel).stat().st_mtime_ns > since for rel in entry_files(root))
