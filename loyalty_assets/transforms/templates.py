"""Message templates, rendered only in Jinja2's sandbox.

HTML bodies are autoescaped (a first name like `<b>Ann</b>` arrives as text, not markup);
subjects, SMS and push texts are plain text, so they are sandboxed but not HTML-escaped (an
escaped `&amp;` in an SMS would be a bug). Undefined variables are errors, not empty strings: a
typo in a template fails the campaign's validation instead of sending "Hello ,".
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, TemplateSyntaxError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

HTML_SUFFIXES = ("html", "htm", "xml", "html.j2", "htm.j2", "j2.html")


class TemplateRenderer:
    """Compiles each template once and renders messages from plain dicts of variables."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir

    @cached_property
    def _files(self) -> SandboxedEnvironment:
        return SandboxedEnvironment(
            loader=FileSystemLoader(str(self.templates_dir)),
            autoescape=select_autoescape(enabled_extensions=HTML_SUFFIXES, default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=False,
        )

    @cached_property
    def _text(self) -> SandboxedEnvironment:
        return SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)

    def file(self, name: str) -> Template:
        """A template file under `templates_dir` (HTML-escaped when its name ends in .html/.htm)."""
        return self._files.get_template(name)

    def text(self, source: str) -> Template:
        """An inline plain-text template (a subject line, an SMS)."""
        return self._text.from_string(source)

    def check(
        self, name: str | None = None, source: str | None = None, sample: Mapping[str, Any] | None = None
    ) -> None:
        """Compile (and, given sample variables, render) a template; raises `TemplateError`."""
        template = self.file(name) if name is not None else self.text(source or "")
        if sample is not None:
            template.render(**sample)


def error_line(exc: BaseException, template: Template | None = None) -> int | None:
    """The template line an error comes from: a syntax error's own line, else the failing frame's.

    Jinja2 rewrites tracebacks so that a render error has a frame in the template itself (its file
    name, or `<template>` for an inline text); the last such frame is the line at fault.
    """
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    wanted = {"<template>"} if template is None or template.filename is None else {template.filename}
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in wanted:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


__all__ = ["TemplateError", "TemplateRenderer", "error_line"]
