"""What every value a client sends must satisfy, checked once per transport before anything acts on it.

JSON nesting within MAX_DEPTH (deeper input exhausts the parser's recursion), integers within 64
bits (what SQLite and PostgreSQL store), and strings free of lone surrogates (not encodable as
UTF-8) and NUL characters (which C strings, PostgreSQL text and most tools cut at). REST bodies go
through `loads`; MCP tool arguments through `check_value` (tools.tool_errors); raw /mcp bodies
through `too_deep` (http_security.LimitBody). Error messages name the field, never echo the value:
a lone surrogate in a message would break the error's own encoding.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel

from .errors import ValidationError

MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(raw: bytes | str, where: str = "body") -> Any:
    """Parse a client's JSON and check every value in it; ValidationError naming the field otherwise."""
    try:
        data = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ValidationError(where, f"JSON nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(where, "not valid JSON; send a JSON object") from None
    check_value("", data, where)
    return data


def too_deep(raw: bytes) -> bool:
    """Whether a JSON text nests deeper than MAX_DEPTH (False for text that is not JSON: its
    reader reports that). Bodies with few brackets, nearly all of them, are answered without parsing."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return False
    try:
        data = json.loads(raw)
    except RecursionError:
        return True
    except (ValueError, UnicodeDecodeError):
        return False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > MAX_DEPTH:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def check_value(path: str, value: Any, where: str = "body") -> None:
    """Raise ValidationError naming the first bad place in `value` (JSON data, or pydantic models of it).

    `path` is the field's name (empty for a whole body, then `where` names it)."""
    stack: list[tuple[str, Any, int]] = [(path, value, 1)]
    while stack:
        at, v, depth = stack.pop()
        if isinstance(v, str):
            found = _BAD_CHAR.search(v)
            if found:
                what = "a NUL character" if found.group() == "\x00" else "a lone surrogate (invalid unicode)"
                raise ValidationError(at or where, f"contains {what} at character {found.start()}; send UTF-8 text")
        elif isinstance(v, bool) or v is None or isinstance(v, float):
            continue
        elif isinstance(v, int):
            if not INT64_MIN <= v <= INT64_MAX:
                raise ValidationError(at or where, "integer out of range: use a 64-bit signed integer")
        elif depth > MAX_DEPTH:
            raise ValidationError(at or where, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and _BAD_CHAR.search(k):
                    raise ValidationError(at or where, "a key contains a NUL character or a lone surrogate")
                stack.append((_join(at, k), item, depth + 1))
        elif isinstance(v, list | tuple):
            stack.extend((_join(at, i), item, depth + 1) for i, item in enumerate(v))
        elif isinstance(v, BaseModel):
            stack.extend((_join(at, k), getattr(v, k), depth + 1) for k in type(v).model_fields)
