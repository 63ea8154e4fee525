"""Field-by-field comparison of the auth frame sent with the profile's own.

The seed thread's failure is an auth frame that is *almost* right: ``"Auth"``
for ``"auth"``, ``command`` for ``type``, a static guest id. A gateway that
refuses silently never says which; this says it, field by field.

Both frames arrive redacted (see ``trace.Redactor``): a token shows as
``<grant token>`` or as its length and hash, so "not the granted token" is
still visible, the token never is. Pure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: Problems that make a frame a different frame (the schema), as opposed to
#: the same frame with other credentials in it.
SCHEMA_PROBLEMS = ("value_case", "value", "json_type", "missing", "extra", "key_case", "renamed")


@dataclass(frozen=True)
class FieldDiff:
    path: str
    problem: str  # one of SCHEMA_PROBLEMS, or "credential"
    sent: Any = None
    expected: Any = None
    #: for key_case / renamed: the key the profile uses
    expected_path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "problem": self.problem}
        if self.problem != "missing":
            out["sent"] = self.sent
        if self.problem != "extra":
            out["expected"] = self.expected
        if self.expected_path is not None:
            out["expected_path"] = self.expected_path
        return out

    def explain(self) -> str:
        """One line a person can act on."""
        p, sent, exp = self.path, _show(self.sent), _show(self.expected)
        if self.problem == "value_case":
            return f"{p}: sent {sent}, the profile sends {exp} (values are case-sensitive)"
        if self.problem == "value":
            return f"{p}: sent {sent}, the profile sends {exp}"
        if self.problem == "json_type":
            return f"{p}: sent {sent} ({_kind(self.sent)}), the profile sends {exp} ({_kind(self.expected)})"
        if self.problem == "missing":
            return f"{p}: missing (the profile sends {exp})"
        if self.problem == "extra":
            return f"{p}: extra field (sent {sent}; the profile's frame has no such field)"
        if self.problem == "key_case":
            return f"{p}: wrong case for field {self.expected_path!r} (field names are case-sensitive)"
        if self.problem == "renamed":
            return f"{p}: sent {sent} where the profile has {self.expected_path}: {exp} (a different field name)"
        return f"{p}: sent {sent}, not this probe's {exp} (the credentials of another grant)"


def diff_auth(sent: Any, expected: Any, grant_paths: set[str] | frozenset[str] = frozenset(),
              path: str = "") -> list[FieldDiff]:
    """Differences between ``sent`` and ``expected`` (JSON values), in the expected frame's order.

    ``grant_paths`` are the fields that carry the grant (token, guest id): a
    different value there is a ``credential`` difference, not a schema one.
    """
    if isinstance(expected, dict) and isinstance(sent, dict):
        return _diff_objects(sent, expected, grant_paths, path)
    here = path or "(frame)"
    if sent == expected:
        return []
    if here in grant_paths or _under(here, grant_paths):
        return [FieldDiff(here, "credential", sent, expected)]
    if isinstance(sent, str) and isinstance(expected, str):
        problem = "value_case" if sent.lower() == expected.lower() else "value"
        return [FieldDiff(here, problem, sent, expected)]
    if type(sent) is not type(expected) and not (_number(sent) and _number(expected)):
        return [FieldDiff(here, "json_type", sent, expected)]
    return [FieldDiff(here, "value", sent, expected)]


def _diff_objects(sent: dict[str, Any], expected: dict[str, Any], grant_paths: set[str] | frozenset[str],
                  path: str) -> list[FieldDiff]:
    out: list[FieldDiff] = []
    missing = [k for k in expected if k not in sent]
    extra = [k for k in sent if k not in expected]
    matched_extra: set[str] = set()
    for key in expected:
        full = _join(path, key)
        if key in sent:
            out += diff_auth(sent[key], expected[key], grant_paths, full)
            continue
        # A key present under another case, or the same value under another name.
        twin = next((k for k in extra if k.lower() == key.lower() and k not in matched_extra), None)
        if twin is not None:
            matched_extra.add(twin)
            out.append(FieldDiff(_join(path, twin), "key_case", sent[twin], expected[key], full))
            out += diff_auth(sent[twin], expected[key], grant_paths, full)
            continue
        renamed = next((k for k in extra if k not in matched_extra and _same_text(sent[k], expected[key])), None)
        if renamed is not None and len(missing) >= 1:
            matched_extra.add(renamed)
            out.append(FieldDiff(_join(path, renamed), "renamed", sent[renamed], expected[key], full))
            continue
        out.append(FieldDiff(full, "missing", None, expected[key]))
    for key in extra:
        if key not in matched_extra:
            out.append(FieldDiff(_join(path, key), "extra", sent[key], None))
    return out


def schema_problems(diffs: list[FieldDiff]) -> list[FieldDiff]:
    return [d for d in diffs if d.problem in SCHEMA_PROBLEMS]


def grant_paths(frame: Any, guest_id: str, token_label: str, path: str = "") -> set[str]:
    """The fields of the profile's auth frame that hold this grant's guest id or token."""
    if isinstance(frame, dict):
        found: set[str] = set()
        for key, value in frame.items():
            found |= grant_paths(value, guest_id, token_label, _join(path, key))
        return found
    if isinstance(frame, list):
        return set().union(*(grant_paths(v, guest_id, token_label, f"{path}[{i}]") for i, v in enumerate(frame))) \
            if frame else set()
    if isinstance(frame, str) and frame and ((guest_id and guest_id in frame) or token_label in frame):
        return {path or "(frame)"}
    return set()


def _same_text(a: Any, b: Any) -> bool:
    return isinstance(a, str) and isinstance(b, str) and a.lower() == b.lower()


def _under(path: str, prefixes: set[str] | frozenset[str]) -> bool:
    return any(path.startswith(p + ".") for p in prefixes)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), "a number")


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."
