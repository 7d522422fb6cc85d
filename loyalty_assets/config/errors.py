"""Errors raised for broken campaign and segment definitions.

A marketer who edits a YAML file must learn from one message which file, which field and what was
expected; this type carries exactly that and renders it uniformly.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError


class DefinitionError(ValueError):
    """A campaign, segment or program definition that cannot be used."""

    def __init__(self, file: Path | str, field: str, message: str) -> None:
        self.file = str(file)
        self.field = field
        self.message = message
        super().__init__(f"{self.file}: field '{field}': {message}")

    @classmethod
    def from_validation(cls, file: Path | str, error: ValidationError) -> DefinitionError:
        """Turn pydantic's error list into one error naming the first field at fault (all listed)."""
        problems = error.errors()
        first = problems[0]
        field = ".".join(str(p) for p in first["loc"]) or "<root>"
        lines = [
            f"{'.'.join(str(p) for p in p_['loc']) or '<root>'}: {p_['msg']} (got {p_.get('input')!r})"
            for p_ in problems
        ]
        return cls(file, field, "; ".join(lines))
