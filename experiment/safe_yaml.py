"""YAML read from people's files, bounded: safe tags, UTF-8, no duplicate keys, small sizes.

`yaml.safe_load` stops code (`!!python/...` tags) but not size: a file of a few lines whose
anchors nest aliases inside aliases stands for billions of values once anything walks it, and
a key given twice silently keeps the last. `load_text` refuses both, by line, with one
`ConfigError`: the file must be at most `MAX_FILE_BYTES` of UTF-8, a key may appear once per
mapping, and aliases are expanded in the count of values (`MAX_VALUES`), before anything is
built from them, so legitimate anchors still work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from objectives.config import ConfigError

MAX_FILE_BYTES = 256 << 10  # an experiment or suite file is a few KB
MAX_VALUES = 100_000  # scalars, lists and mappings once every alias is expanded
MERGE_TAG = "tag:yaml.org,2002:merge"  # `<<: *base` may override keys: not a duplicate


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key that appears twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"line {line}: key {key!r} appears twice in one mapping (first on line "
                    f"{seen[key]}); give it once"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_text(path: str | Path) -> str:
    """A file's text: at most `MAX_FILE_BYTES`, UTF-8; otherwise a ConfigError naming it."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{path}: {size} bytes; an experiment file is at most {MAX_FILE_BYTES} bytes"
            )
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start})"
        ) from None


def load_text(text: str) -> Any:
    """Parse one YAML document safely, within the limits above (ConfigError beyond them;
    yaml.YAMLError for text that is not YAML)."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"{len(text)} characters of YAML; at most {MAX_FILE_BYTES}")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_values(node)
        return loader.construct_document(node)
    except RecursionError:
        raise ConfigError("YAML nested too deeply") from None
    finally:
        loader.dispose()


def _count_values(root: yaml.Node) -> int:
    """Values under `root` with every alias expanded, counted without expanding anything
    (each node's count is kept by identity); ConfigError past `MAX_VALUES` or on an alias
    that contains itself."""
    counts: dict[int, int] = {}
    open_nodes: set[int] = set()

    def count(node: yaml.Node) -> int:
        if id(node) in counts:
            return counts[id(node)]
        if id(node) in open_nodes:
            line = node.start_mark.line + 1
            raise ConfigError(f"line {line}: a YAML alias refers to a value that contains it")
        open_nodes.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(count(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(count(key) + count(value) for key, value in node.value)
        open_nodes.discard(id(node))
        if total > MAX_VALUES:
            line = node.start_mark.line + 1
            raise ConfigError(
                f"line {line}: more than {MAX_VALUES} values here (each alias expanded); "
                "an experiment file needs far fewer"
            )
        counts[id(node)] = total
        return total

    return count(root)
