"""Where a search's files live: a local folder, or a URI (s3://, gs://, file://) that every
node of a cluster can reach. URIs go through pyarrow's filesystems (what Ray Tune uses too);
the driver keeps a local copy of its own files and copies each one up as it changes."""

from __future__ import annotations

from pathlib import Path

CACHE = Path.home() / ".cache" / "infoae-search"  # the driver's copy of a URI search's files


def is_remote(path: str) -> bool:
    return "://" in path


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def local_dir(root: str, name: str) -> Path:
    """Where the driver writes an experiment's own files: the folder itself, or its cache."""
    return CACHE / name if is_remote(root) else Path(root) / name


def exists(path: str) -> bool:
    """Whether a file or folder exists at a local path or a URI."""
    if not is_remote(path):
        return Path(path).exists()
    import pyarrow.fs

    filesystem, inner = pyarrow.fs.FileSystem.from_uri(path)
    return filesystem.get_file_info(inner).type != pyarrow.fs.FileType.NotFound


def upload(local: Path, uri: str) -> None:
    """Copy one local file to a URI (its folder is created)."""
    import pyarrow.fs

    filesystem, inner = pyarrow.fs.FileSystem.from_uri(uri)
    filesystem.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    pyarrow.fs.copy_files(str(local), inner, destination_filesystem=filesystem)


def download(uri: str, local: Path) -> bool:
    """Copy one file from a URI to a local path; False when there is none."""
    if not exists(uri):
        return False
    import pyarrow.fs

    filesystem, inner = pyarrow.fs.FileSystem.from_uri(uri)
    local.parent.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(inner, str(local), source_filesystem=filesystem)
    return True
