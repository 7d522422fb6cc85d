"""Loading the catalog folder (`LOYALTY_CAMPAIGNS_DIR`): program settings, campaigns, segments, templates.

Layout::

    program.yaml            time zone, first partition date, daily run time (optional)
    campaigns/*.yaml|.yml   one campaign per file
    segments/*.yaml|.yml    one saved segment per file
    templates/*             Jinja2 templates the campaigns name

A broken campaign or segment file is reported as a `DefinitionError` naming file, field and
expectation, and the rest of the catalog still loads: one marketer's typo must not stop every other
campaign. A broken `program.yaml` raises its `DefinitionError`: nothing can run without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateNotFound, TemplateSyntaxError
from pydantic import ValidationError

from loyalty_assets.config.campaigns import (
    Campaign,
    EventTrigger,
    FilterStep,
    NotifyStaff,
    Program,
    SegmentAction,
    SendEmail,
    SendText,
)
from loyalty_assets.config.errors import DefinitionError
from loyalty_assets.config.filters import definition_error, referenced_segments
from loyalty_assets.config.segments import SegmentDefinition, definition_files, load_segments, read_definition
from loyalty_assets.config.template_samples import sample_shapes
from loyalty_assets.transforms.templates import TemplateError, TemplateRenderer, error_line

DEFAULT_CATALOG = Path(__file__).resolve().parents[1] / "catalog"


@dataclass
class Catalog:
    """Everything the pipeline runs, validated."""

    root: Path
    program: Program
    campaigns: dict[str, Campaign]
    segments: dict[str, SegmentDefinition]
    errors: list[DefinitionError] = field(default_factory=list)
    campaign_files: dict[str, Path] = field(default_factory=dict)
    manual_segments: set[str] = field(default_factory=set)

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    def renderer(self) -> TemplateRenderer:
        return TemplateRenderer(self.templates_dir)


def read_yaml(path: Path) -> Any:
    """Parse a definition file (dates stay text for exact error paths), syntax errors naming the line."""
    return read_definition(path)


def load_program(root: Path) -> Program:
    """`program.yaml` (defaults when absent); any problem is one `DefinitionError` naming file and field."""
    path = root / "program.yaml"
    if not path.exists():
        return Program()
    data = read_yaml(path)
    if data is None:
        return Program()
    if not isinstance(data, dict):
        raise DefinitionError(path, "<root>", f"expected a mapping of program settings, got {type(data).__name__}")
    try:
        return Program.model_validate(data)
    except ValidationError as exc:
        raise definition_error(path, exc) from exc


def load_campaign(
    path: Path,
    renderer: TemplateRenderer,
    segments: dict[str, SegmentDefinition],
    manual_segments: set[str] = frozenset(),  # type: ignore[assignment]
) -> Campaign:
    """One campaign file → `Campaign`, with its templates compiled and its references resolved.

    Segment references may name saved segments or manual segments (kept by campaign steps).
    """
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise DefinitionError(path, "<root>", "expected a mapping of campaign fields")
    try:
        campaign = Campaign.model_validate(data)
    except ValidationError as exc:
        raise definition_error(path, exc) from exc
    if campaign.id != path.stem:
        raise DefinitionError(path, "id", f"must equal the file name '{path.stem}', got '{campaign.id}'")
    known = set(segments) | set(manual_segments)
    for field_path, wanted in _segment_references(campaign):
        unknown = sorted(wanted - known)
        if unknown:
            raise DefinitionError(path, field_path, f"unknown segment(s) {unknown}; known: {sorted(known)}")
    for field_path, step in _step_paths(campaign.steps, "steps"):
        _check_step_templates(path, field_path, campaign, step, renderer)
    return campaign


def _step_paths(steps: list[Any], prefix: str) -> list[tuple[str, Any]]:
    """(field path in the file, step) for every step, branches included: `steps.2.else.0`."""
    found: list[tuple[str, Any]] = []
    for index, step in enumerate(steps):
        here = f"{prefix}.{index}"
        found.append((here, step))
        if isinstance(step, FilterStep):
            found += _step_paths(step.else_, f"{here}.else")
        elif hasattr(step, "variants"):
            for v_index, variant in enumerate(step.variants):
                found += _step_paths(variant.steps, f"{here}.variants.{v_index}.steps")
    return found


def _segment_references(campaign: Campaign) -> list[tuple[str, set[str]]]:
    refs: list[tuple[str, set[str]]] = []
    if campaign.audience is not None:
        if campaign.audience.segment:
            refs.append(("audience.segment", {campaign.audience.segment}))
        if campaign.audience.filter is not None:
            refs.append(("audience.filter", referenced_segments(campaign.audience.filter)))
    if isinstance(campaign.trigger, EventTrigger) and campaign.trigger.segment:
        refs.append(("trigger.segment", {campaign.trigger.segment}))
    for field_path, step in _step_paths(campaign.steps, "steps"):
        if isinstance(step, FilterStep):
            if step.segment:
                refs.append((f"{field_path}.segment", {step.segment}))
            if step.filter is not None:
                refs.append((f"{field_path}.filter", referenced_segments(step.filter)))
    return refs


def _check_step_templates(
    path: Path, field_path: str, campaign: Campaign, step: Any, renderer: TemplateRenderer
) -> None:
    """Compile the step's templates and render each against every shape its variables can take.

    A syntax error names the template and its line; a render error also names the shape that
    broke it (e.g. `when bonus is absent`), since that is what the marketer must guard against.
    """
    checks: list[tuple[str, str | None, str | None]] = []
    if isinstance(step, SendEmail):
        checks = [("subject", None, step.subject), ("template", step.template, None)]
    elif isinstance(step, SendText):
        checks = [("template", step.template, None)] if step.template else [("text", None, step.text)]
    elif isinstance(step, NotifyStaff):
        checks = [("subject", None, step.subject), ("text", None, step.text)]
    if not checks:
        return
    shapes = sample_shapes(campaign, step.id)
    for field_name, file_name, source in checks:
        try:
            template = renderer.file(file_name) if file_name is not None else renderer.text(source or "")
            for shape in shapes:
                try:
                    template.render(**shape.variables)
                except (TemplateSyntaxError, TemplateNotFound):
                    raise  # an included template's syntax or absence: not a matter of shape
                except Exception as exc:  # any render error is the template's, reported with its line
                    line = error_line(exc, template)
                    where = f"template {file_name!r}" if file_name else "template"
                    at = f"{where} line {line}" if line else where
                    message = f"{at}, {shape.description}: {type(exc).__name__}: {exc}"
                    raise DefinitionError(path, f"{field_path}.{field_name}", message) from exc
        except TemplateError as exc:  # not compiled: syntax errors, missing files (also when included)
            line = error_line(exc)
            name = getattr(exc, "name", None) or file_name  # an included template's error names that one
            where = f"template {name!r}" if name else "template"
            at = f"{where} line {line}: " if line else (f"{where}: " if name else "")
            raise DefinitionError(path, f"{field_path}.{field_name}", f"{at}{type(exc).__name__}: {exc}") from exc


def manual_segment_names(root: Path) -> set[str]:
    """Segments that campaign steps add customers to (a cheap pre-pass over the campaign files)."""
    names: set[str] = set()
    paths, _ = definition_files(root / "campaigns")
    for path in paths.values():
        try:
            data = read_definition(path)
            campaign = Campaign.model_validate(data)
        except Exception:  # reported properly by load_campaign
            continue
        names |= {s.segment for s in campaign.all_steps() if isinstance(s, SegmentAction)}
    return names


def load_catalog(root: Path = DEFAULT_CATALOG) -> Catalog:
    """Load and validate the whole catalog; invalid files are collected in `Catalog.errors`."""
    program = load_program(root)
    kept_by_steps = manual_segment_names(root)
    segments, errors = load_segments(root / "segments", manual=kept_by_steps)
    errors = list(errors)
    renderer = TemplateRenderer(root / "templates")
    campaigns: dict[str, Campaign] = {}
    files: dict[str, Path] = {}
    manual = kept_by_steps - set(segments)
    campaign_paths, duplicates = definition_files(root / "campaigns")
    errors += duplicates
    for path in campaign_paths.values():
        try:
            campaign = load_campaign(path, renderer, segments, manual)
        except DefinitionError as exc:
            errors.append(exc)
            continue
        campaigns[campaign.id] = campaign
        files[campaign.id] = path
    return Catalog(
        root=root,
        program=program,
        campaigns=campaigns,
        segments=segments,
        errors=errors,
        campaign_files=files,
        manual_segments=manual,
    )
