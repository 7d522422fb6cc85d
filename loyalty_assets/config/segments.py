"""Saved segments: one YAML file per segment in the catalog's `segments/` folder.

A segment names a filter, optionally sets labels on its members and hands them to the loyalty module
as target audiences (`export: true`, one audience per label). Loading never stops at the first bad
file: each broken file yields one `DefinitionError` (file, field, expectation) and the valid segments
are still returned, so one typo does not take every campaign down with it. References between
segments (`field: segment`) are checked here too, because a dangling reference or a cycle can only
be seen with all files in hand.
"""

from __future__ import annotations

import re
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
    """SafeLoader that keeps `2025-01-01` as text, and reads numbers as YAML 1.2 does.

    PyYAML turns date-looking scalars into `date` objects and raises on impossible ones
    (`2025-13-01`) while parsing, which would lose the field path; the filter models parse dates
    themselves and report the exact key instead. PyYAML (YAML 1.1) also reads `10:00` as the
    base-60 number 600, which a time field would silently take as 00:10, and `010` as octal 8;
    here both stay text, so `at: 10:00` means ten o'clock and `010` is an error or a text.
    """


_REPLACED_TAGS = ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_NoTimestampLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_NoTimestampLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_NoTimestampLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """Parse a definition file (dates stay text, see `_NoTimestampLoader`)."""
    with path.open(encoding="utf-8") as fh:
        return yaml.load(fh, Loader=_NoTimestampLoader)


#: Endings of definition files; both are read, and one id in two files is an error.
DEFINITION_SUFFIXES = (".yaml", ".yml")


def definition_files(folder: Path) -> tuple[dict[str, Path], list[DefinitionError]]:
    """The definition files of a folder by id (file name without ending), and one error per id
    written in more than one file (`x.yaml` and `x.yml`, naming them all): none of them is used,
    since which one was meant cannot be known."""
    by_id: dict[str, list[Path]] = {}
    for path in sorted(Path(folder).glob("*")):
        if path.suffix in DEFINITION_SUFFIXES and path.is_file():
            by_id.setdefault(path.stem, []).append(path)
    files: dict[str, Path] = {}
    errors: list[DefinitionError] = []
    for sid, paths in by_id.items():
        if len(paths) == 1:
            files[sid] = paths[0]
            continue
        names = ", ".join(p.name for p in paths)
        # One error (on the first file) naming them all: one broken id is one invalid definition.
        errors.append(
            DefinitionError(paths[0], "id", f"id {sid!r} is defined by more than one file ({names}): keep one")
        )
    return files, errors


def read_definition(path: Path) -> Any:
    """`read_yaml`, with every way a file can be unreadable as one `DefinitionError` naming it."""
    try:
        return read_yaml(path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "<file>"
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = " ".join(f"{problem} ({context})".split() if context else str(problem).split())
        raise DefinitionError(path, where, f"not valid YAML: {detail}") from exc
    except UnicodeDecodeError as exc:
        raise DefinitionError(path, "<file>", f"not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise DefinitionError(path, "<file>", f"cannot be read: {exc.strerror or exc}") from exc


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
    manual: AbstractSet[str] = frozenset(),
) -> tuple[dict[str, SegmentDefinition], list[DefinitionError]]:
    """Drop segments with unknown references or in a reference cycle, with one error each.

    A segment referring to one that failed to load (id in `failed`) or was dropped here is dropped
    as well, since it could not be evaluated; this repeats until nothing changes. References to
    `manual` segments (kept by campaign steps) are known.
    """
    good = dict(segments)
    errors: list[DefinitionError] = []
    while True:
        dropped = False
        for sid, defn in list(good.items()):
            for field, ref in segment_references(defn):
                if ref in good or (ref in manual and ref not in segments and ref not in failed):
                    continue
                if ref in failed or ref in segments:
                    msg = f"refers to segment {ref!r}, whose definition is invalid"
                else:
                    known = ", ".join(sorted(set(segments) | set(failed))) or "none"
                    manual_known = (
                        f"; manual segments (kept by add_to_segment steps): {', '.join(sorted(manual))}"
                        if manual
                        else ""
                    )
                    msg = f"unknown segment {ref!r}; known segments: {known}{manual_known}"
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


def load_segments(
    folder: Path, manual: AbstractSet[str] = frozenset()
) -> tuple[dict[str, SegmentDefinition], list[DefinitionError]]:
    """Read every `*.yaml` / `*.yml` in `folder`; return the usable segments and one error per bad file.

    `manual` names the manual segments kept by campaign steps (`add_to_segment`), which a saved
    segment's filter may read like any other segment.
    """
    segments: dict[str, SegmentDefinition] = {}
    files: dict[str, Path] = {}
    paths, errors = definition_files(folder)
    failed: set[str] = {Path(e.file).stem for e in errors}
    for path in paths.values():
        try:
            defn = parse_segment(path, read_definition(path))
        except DefinitionError as e:
            errors.append(e)
            failed.add(path.stem)
            continue
        segments[defn.id] = defn
        files[defn.id] = path
    good, ref_errors = check_references(segments, files, failed, manual)
    return good, errors + ref_errors


__all__ = [
    "Condition",
    "SegmentDefinition",
    "check_references",
    "definition_files",
    "load_segments",
    "parse_segment",
    "read_definition",
    "read_yaml",
    "segment_references",
]
