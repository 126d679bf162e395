"""The small part of YAML a YOLO ``data.yaml`` uses: read safely, with or without PyYAML.

PyYAML (``yaml.safe_load``) is used when it is installed; otherwise :func:`parse_simple`
reads top-level ``key: value`` pairs whose values are scalars, flow lists (``[a, b]``), flow
maps (``{0: a}``), or indented blocks of ``- item`` or ``key: value`` lines. Nothing is ever
constructed beyond strings, numbers, lists and dicts.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["dump_simple", "load_yaml", "parse_simple"]


class YamlError(ValueError):
    """The text is not the YAML subset :func:`parse_simple` reads."""


def load_yaml(text: str) -> Any:
    """Parse ``text`` with ``yaml.safe_load`` if available, else :func:`parse_simple`.

    Raises :class:`YamlError` on malformed text, whichever parser read it.
    """
    try:
        import yaml
    except ImportError:
        return parse_simple(text)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise YamlError(str(exc).replace("\n", " ")) from None


def parse_simple(text: str) -> dict[str, Any]:
    """Parse the ``data.yaml`` subset described in the module docstring."""
    out: dict[str, Any] = {}
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if _strip(line).strip()]
    i = 0
    while i < len(lines):
        n, line = lines[i]
        if line[0].isspace():
            raise YamlError(f"line {n}: unexpected indentation")
        key, value = _pair(_strip(line), n)
        i += 1
        if value:
            out[key] = _value(value, n)
            continue
        block: list[tuple[int, str]] = []
        while i < len(lines) and lines[i][1][0].isspace():
            block.append((lines[i][0], _strip(lines[i][1]).strip()))
            i += 1
        out[key] = _block(block) if block else None
    return out


def dump_simple(data: dict[str, Any]) -> str:
    """Write a flat dict whose values are scalars, lists or int-keyed dicts as YAML."""
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines += [f"  {k}: {_scalar_out(v)}" for k, v in value.items()]
        elif isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {_scalar_out(v)}" for v in value]
        else:
            lines.append(f"{key}: {_scalar_out(value)}")
    return "\n".join(lines) + "\n"


def _block(block: list[tuple[int, str]]) -> list[Any] | dict[Any, Any]:
    if all(item.startswith("- ") or item == "-" for _, item in block):
        return [_value(item[1:].strip(), n) for n, item in block]
    result: dict[Any, Any] = {}
    for n, item in block:
        key, value = _pair(item, n)
        result[_scalar(key, n)] = _value(value, n)
    return result


def _pair(line: str, n: int) -> tuple[str, str]:
    match = re.match(r"""^\s*("[^"]*"|'[^']*'|[^:#]+?)\s*:(?:\s+(.*))?$""", line.rstrip())
    if not match:
        raise YamlError(f"line {n}: expected 'key: value'")
    key = match.group(1)
    if key[:1] in "\"'":
        key = key[1:-1]
    return key, (match.group(2) or "").strip()


def _value(text: str, n: int) -> Any:
    if text.startswith("["):
        if not text.endswith("]"):
            raise YamlError(f"line {n}: unclosed '['")
        return [_scalar(t, n) for t in _split(text[1:-1], n)]
    if text.startswith("{"):
        if not text.endswith("}"):
            raise YamlError(f"line {n}: unclosed '{{'")
        pairs = [_pair(t, n) for t in _split(text[1:-1], n)]
        return {_scalar(k, n): _scalar(v, n) for k, v in pairs}
    return _scalar(text, n)


def _split(text: str, n: int) -> list[str]:
    parts: list[str] = []
    current, quote = "", ""
    for ch in text:
        if quote:
            current += ch
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            current += ch
            quote = ch
        elif ch == ",":
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if quote:
        raise YamlError(f"line {n}: unclosed quote")
    if current.strip():
        parts.append(current.strip())
    return parts


def _scalar(text: str, n: int) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise YamlError(f"line {n}: bad quoted string {text}") from None
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _strip(line: str) -> str:
    """``line`` without a trailing ``# comment`` (outside quotes)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _scalar_out(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)
