"""Message templates: Jinja2's sandbox defines the output, compiled Polars expressions produce it.

HTML bodies are autoescaped (a first name like `<b>Ann</b>` arrives as text, not markup);
subjects, SMS and push texts are plain text, so they are sandboxed but not HTML-escaped (an
escaped `&amp;` in an SMS would be a bug). Undefined variables are errors, not empty strings: a
typo in a template fails the campaign's validation instead of sending "Hello ,".

Validation (`check`) always renders in the sandbox. For sending, each template is also compiled
once (`compiled_file` / `compiled_text`, cached by source, so the compilation done while the
catalog loads serves every later run) to Polars expressions that give the same bytes; see
`template_compiler`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, TemplateSyntaxError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from loyalty_assets.transforms.template_compiler import CompiledTemplate, build

HTML_SUFFIXES = ("html", "htm", "xml", "html.j2", "htm.j2", "j2.html")

#: Compiled templates by (folder, name, source, autoescape): compiled at catalog load, reused by
#: every renderer of the same catalog; an edited file has a new source and compiles again.
_COMPILED: dict[tuple[str, str, str, bool], CompiledTemplate] = {}


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

    def compiled_file(self, name: str) -> CompiledTemplate:
        """`file(name)` with its compiled form (HTML-escaped like the sandbox for .html/.htm)."""
        env = self._files
        template = env.get_template(name)
        assert env.loader is not None
        source, _, _ = env.loader.get_source(env, name)
        autoescape = bool(env.autoescape(name)) if callable(env.autoescape) else bool(env.autoescape)
        return self._compiled(name, source, autoescape, env, template)

    def compiled_text(self, source: str) -> CompiledTemplate:
        """`text(source)` with its compiled form (never escaped)."""
        return self._compiled("<inline>", source, False, self._text, self.text(source))

    def _compiled(
        self, name: str, source: str, autoescape: bool, env: SandboxedEnvironment, template: Template
    ) -> CompiledTemplate:
        key = (str(self.templates_dir), name, source, autoescape)
        found = _COMPILED.get(key)
        if found is None:
            found = _COMPILED[key] = build(name, env, template, source, autoescape=autoescape)
        return found

    def check(
        self, name: str | None = None, source: str | None = None, sample: Mapping[str, Any] | None = None
    ) -> None:
        """Compile (and, given sample variables, render) a template; raises `TemplateError`."""
        template = self.file(name) if name is not None else self.text(source or "")
        if sample is not None:
            template.render(**sample)
        # compile now (catalog load), so runs only look the compiled form up
        if name is not None:
            self.compiled_file(name)
        else:
            self.compiled_text(source or "")


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
