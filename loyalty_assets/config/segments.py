"""Saved segments: one YAML file per segment in the catalog's `segments/` folder.

A segment names a filter, optionally sets labels on its members and hands them to the loyalty module
as target audiences (`export: true`, one audience per label). Loading never stops at the first bad
file: each broken file yields one `DefinitionError` (file, field, expectation) and the valid segments
are still returned, so one typo does not take every campaign down with it. References between
segments (`field: segment`) are checked here too, because a dangling reference or a cycle can only
be seen with all files in hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from loyalty_assets.config.errors import DefinitionError
from loyalty_assets.config.filters import (
    ID_PATTERN,
    Condition,
    Filter,
    definition_error,
    iter_conditions,
)


class SegmentDefinition(BaseModel):
    """A saved segment as written in `catalog/segments/<id>.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    name: str
    description: str | None = None
    export: bool = False
    labels: tuple[str, ...] = Field(default=(), validate_default=True)
    filter: Filter

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not ID_PATTERN.match(v):
            raise ValueError(f"expected lower-case letters, digits and '_' only, got {v!r}")
        return v

    @field_validator("labels")
    @classmethod
    def _labels_shape(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if any(not label.strip() for label in v):
            raise ValueError("labels must be non-empty texts")
        if info.data.get("export") and not v:
            raise ValueError("export: true needs at least one label (each label is one target audience)")
        return v

    @property
    def audiences(self) -> tuple[str, ...]:
        """Target audiences handed to the loyalty module: one per label, only when exported."""
        return self.labels if self.export else ()


class _NoTimestampLoader(yaml.SafeLoader):
    """SafeLoader that keeps `2025-01-01` as text.

    PyYAML turns date-looking scalars into `date` objects and raises on impossible ones
    (`2025-13-01`) while parsing, which would lose the field path; the filter models parse dates
    themselves and report the exact key instead.
    """


_NoTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_yaml(path: Path) -> Any:
    """Parse a definition file (dates stay text, see `_NoTimestampLoader`)."""
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_NoTimestampLoader)


def parse_segment(path: Path, data: Any) -> SegmentDefinition:
    """Validate one parsed file; raises DefinitionError naming file and field."""
    if not isinstance(data, dict):
        raise DefinitionError(path, "<root>", f"expected a mapping with id, name, filter; got {type(data).__name__}")
    data = {"id": path.stem, **data}
    try:
        defn = SegmentDefinition.model_validate(data)
    except ValidationError as e:
        raise definition_error(path, e) from None
    if defn.id != path.stem:
        raise DefinitionError(path, "id", f"expected the file name {path.stem!r}, got {defn.id!r}")
    return defn


def segment_references(defn: SegmentDefinition) -> list[tuple[str, str]]:
    """(field path in the file, referenced segment id) for each `field: segment` condition."""
    refs: list[tuple[str, str]] = []
    for path, cond in iter_conditions(defn.filter, ("filter",)):
        if cond.field == "segment":
            values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
            refs.extend((".".join(map(str, (*path, "value"))), v) for v in values)
    return refs


def check_references(
    segments: Mapping[str, SegmentDefinition],
    files: Mapping[str, Path],
    failed: AbstractSet[str] = frozenset(),
) -> tuple[dict[str, SegmentDefinition], list[DefinitionError]]:
    """Drop segments with unknown references or in a reference cycle, with one error each.

    A segment referring to one that failed to load (id in `failed`) or was dropped here is dropped
    as well, since it could not be evaluated; this repeats until nothing changes.
    """
    good = dict(segments)
    errors: list[DefinitionError] = []
    while True:
        dropped = False
        for sid, defn in list(good.items()):
            for field, ref in segment_references(defn):
                if ref in good:
                    continue
                if ref in failed or ref in segments:
                    msg = f"refers to segment {ref!r}, whose definition is invalid"
                else:
                    known = ", ".join(sorted(set(segments) | set(failed))) or "none"
                    msg = f"unknown segment {ref!r}; known segments: {known}"
                errors.append(DefinitionError(files.get(sid, sid), field, msg))
                del good[sid]
                dropped = True
                break
        if dropped:
            continue
        cycles = _cycles(good)
        if not cycles:
            return good, errors
        for cycle in cycles:
            chain = " -> ".join([*cycle, cycle[0]])
            for sid in cycle:
                field = next(f for f, ref in segment_references(segments[sid]) if ref in cycle)
                errors.append(DefinitionError(files.get(sid, sid), field, f"segment reference cycle: {chain}"))
        for cycle in cycles:
            for sid in cycle:
                good.pop(sid, None)


def _cycles(segments: Mapping[str, SegmentDefinition]) -> list[list[str]]:
    """Reference cycles among `segments` (each reported once, starting from its smallest id)."""
    graph = {sid: sorted({ref for _, ref in segment_references(d) if ref in segments}) for sid, d in segments.items()}
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    start = cycle.index(min(cycle))
                    cycles.append(cycle[start:] + cycle[:start])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for sid in sorted(graph):
        if sid not in state:
            visit(sid)
    return cycles


def load_segments(folder: Path) -> tuple[dict[str, SegmentDefinition], list[DefinitionError]]:
    """Read every `*.yaml` in `folder`; return the usable segments and one error per bad file."""
    segments: dict[str, SegmentDefinition] = {}
    files: dict[str, Path] = {}
    errors: list[DefinitionError] = []
    failed: set[str] = set()
    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            data = read_yaml(path)
        except yaml.YAMLError as e:
            errors.append(DefinitionError(path, "<root>", f"not valid YAML: {e}"))
            failed.add(path.stem)
            continue
        try:
            defn = parse_segment(path, data)
        except DefinitionError as e:
            errors.append(e)
            failed.add(path.stem)
            continue
        segments[defn.id] = defn
        files[defn.id] = path
    good, ref_errors = check_references(segments, files, failed)
    return good, errors + ref_errors


__all__ = [
    "Condition",
    "SegmentDefinition",
    "check_references",
    "load_segments",
    "parse_segment",
    "read_yaml",
    "segment_references",
]
