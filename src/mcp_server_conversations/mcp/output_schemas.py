"""Output schemas that are cheap to validate.

Clients re-validate every structured result against the tool's output schema: the MCP Python
SDK's `Client` runs jsonschema over it on each call. pydantic writes `$ref`s into `$defs` (which
jsonschema resolves through `referencing` for every list item) and spells `X | None` as
`anyOf: [X, {type: null}]` (two sub-validations, one of them failing, per field). Both have exact
equivalents that validate in well under half the time: the definition inlined, and
`type: [X, "null"]`. The JSON accepted is the same; the client's validation
cost is measured by bench/latency.py.
"""

from __future__ import annotations

from typing import Any

_DEFS = "#/$defs/"
_ANNOTATIONS = frozenset({"title", "description", "default", "examples"})


def lean(schema: dict[str, Any]) -> dict[str, Any]:
    """The same schema with local `$ref`s inlined and nullable simple types folded into type arrays.

    A recursive model cannot be inlined: then the schema is returned unchanged."""
    defs = schema.get("$defs", {})
    try:
        out = _walk({k: v for k, v in schema.items() if k != "$defs"}, defs, ())
    except _Recursive:
        return schema
    return out


class _Recursive(Exception):
    pass


def _walk(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_walk(x, defs, seen) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith(_DEFS):
        name = ref.removeprefix(_DEFS)
        if name in seen or name not in defs:
            raise _Recursive(name)
        target = _walk(defs[name], defs, (*seen, name))
        return {**target, **{k: _walk(v, defs, seen) for k, v in node.items() if k != "$ref"}}
    out = {k: v if k in ("enum", "const", "default", "examples") else _walk(v, defs, seen) for k, v in node.items()}
    return _fold_nullable(out)


def _fold_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [S, {type: null}]` where S has one simple `type` → S with `type: [t, "null"]`."""
    options = node.get("anyOf")
    if not isinstance(options, list) or len(options) != 2 or {"type": "null"} not in options:
        return node
    (other,) = [o for o in options if o != {"type": "null"}]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or "anyOf" in other:
        return node
    # The field's own title/description win over the inlined model's; other shared keywords would clash.
    other = {k: v for k, v in other.items() if not (k in _ANNOTATIONS and k in node)}
    if set(other) & (set(node) - {"anyOf"}):
        return node
    folded = {k: v for k, v in node.items() if k != "anyOf"}
    folded.update(other)
    folded["type"] = [other["type"], "null"]
    if "enum" in other:
        folded["enum"] = [*other["enum"], None]
    if "const" in other:
        folded["enum"] = [other["const"], None]
        del folded["const"]
    return folded
