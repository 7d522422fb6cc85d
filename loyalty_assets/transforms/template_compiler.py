"""Message templates compiled to Polars expressions, byte-identical to Jinja2's sandbox.

Rendering one message at a time through Jinja2 costs ~15k messages/s per core; a day at 1M
customers renders ~700k. So each template is compiled once, at catalog load, from Jinja2's own
parse tree (whitespace control and the trailing newline are already applied by its lexer) into one
Polars expression over a frame of template variables, one column per variable path
(`customer.first_name`, `bonus.amount`, …; `VARIABLES`). The compiled form must give exactly the
bytes `SandboxedEnvironment(undefined=StrictUndefined)` gives, HTML-escaped or not, including:

* what Python's `str()` prints: `None` for a missing value, `500.00` for a Decimal, `2025-01-31`
  for a date, `2025-01-31 10:00:00+00:00` for a UTC datetime;
* Jinja2's truthiness (`""`, `None`, `0`, `0.00`, `[]` are false) for `or`, `and`, `not`, `if`;
* StrictUndefined: `bonus.amount` when the occasion has no accrual is an error
  (`UndefinedError: 'None' has no attribute 'amount'`) unless `default` catches it. Errors are
  returned per row, with Jinja2's own message, so one customer's message can be skipped with the
  reason while the others go out.

What compiles: constants, variables, attribute access, `or`/`and`/`not`, comparisons, `is
defined/undefined/none`, `~`, inline `if … else`, `{% if %}`/`elif`/`else`, `{% for %}` over a
list variable (with `loop.index/index0/first/last/length` and `{% else %}`), `.strftime()` with
the directives both libraries print alike, and the filters in `_FILTERS`. Anything else raises
`NotCompilable` and that template is rendered by the sandbox, per row, with the reason logged.
Values the compiled form cannot promise to match (case mappings outside Latin/Greek/Cyrillic,
years before 1000) are flagged per row and those rows alone go to the sandbox.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from jinja2 import StrictUndefined, Template, nodes
from jinja2.sandbox import SandboxedEnvironment

log = logging.getLogger(__name__)

#: Every template variable: path → kind. A path's column in the variables frame has that name.
#: `bonus` is nullable (no accrual for the occasion → None): its column is a presence flag.
VARIABLES: dict[str, str] = {
    "customer": "ns",
    "customer.customer_id": "int",
    "customer.first_name": "str",
    "customer.email": "str",
    "customer.phone": "str",
    "customer.city": "str",
    "customer.gender": "str",
    "customer.birth_date": "date",
    "bonus": "ns?",
    "bonus.amount": "decimal",
    "bonus.expires_at": "datetime",
    "bonus.expires_on": "date",
    "bonus.legal_entity": "str",
    "check": "ns",
    "check.check_id": "str",
    "check.total": "decimal",
    "event": "ns",
    "event.amount": "decimal",
    "event.date": "date",
    "favourite_categories": "list",
    "favourite": "ns",
    "favourite.earned": "decimal",
    "favourite.percent": "decimal",
    "favourite.period_end": "date",
    "favourite.days_left": "int",
    "favourite.could_earn_per_1000": "decimal",
    "campaign": "ns",
    "campaign.id": "str",
    "campaign.name": "str",
    "variant": "str",
    "occasion": "str",
    "event_date": "date",
    "send_date": "date",
}

#: Polars dtypes of the variables frame (decimals carry 2 places: Python prints them as stored).
VARIABLE_DTYPES: dict[str, pl.DataType] = {
    path: {
        "ns": pl.Boolean(),
        "ns?": pl.Boolean(),
        "int": pl.Int64(),
        "str": pl.String(),
        "date": pl.Date(),
        "datetime": pl.Datetime("us", "UTC"),
        "decimal": pl.Decimal(38, 2),
        "list": pl.List(pl.String()),
    }[kind]
    for path, kind in VARIABLES.items()
}


class NotCompilable(Exception):
    """The template uses something outside the compiled subset; the reason says what."""


# --- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Val:
    """A compiled expression: its static kind and per-row Polars expressions.

    `raw` is the typed value (null = Python None; for a namespace its presence flag). `undef` is
    the message where the value is a StrictUndefined object (harmless until used), `err` where
    evaluating it already raised; `fb` marks rows only the sandbox can render exactly.
    """

    kind: str
    raw: pl.Expr | None = None
    undef: pl.Expr | None = None
    err: pl.Expr | None = None
    fb: pl.Expr | None = None
    ns: str | None = None
    text_: pl.Expr | None = None  # kind "mixed": str() precomputed
    truthy_: pl.Expr | None = None  # kind "mixed": truthiness precomputed
    method: str | None = None  # kind "method": a bound method awaiting its call


@dataclass(frozen=True)
class Block:
    """Rendered output of a run of statements: text, first error, rows for the sandbox."""

    text: pl.Expr
    err: pl.Expr | None = None
    fb: pl.Expr | None = None


_NONE = pl.lit("None")
#: Every character Python's `str.isspace` accepts (what Jinja2's `trim`/`title` split on), written out:
#: scanning all 1.1M code points cost 0.08 s at every import (`tests/test_template_compiler.py` checks it).
_PY_SPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
#: Case mappings are compared only where Python's and Rust's Unicode tables surely agree.
_CASE_SAFE = r"^[\x00-\u052f]*$"
#: Characters whose capitalize() (titlecase) differs from upper().
_TITLECASE_DIFFERS = "[\u00df\u01c4-\u01cc\u01f1-\u01f3\u1f80-\u1fff\ufb00-\ufb17\u0345\u0390\u03b0\u0587\u1e96-\u1e9a]"
_STRFTIME = re.compile(r"%[dmYyHMSjBbAa%]|[^%]")
_TYPE_NAMES = {"int": "int", "decimal": "decimal.Decimal", "str": "str", "date": "datetime.date"}


def _first(*exprs: pl.Expr | None) -> pl.Expr | None:
    present = [e for e in exprs if e is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else pl.coalesce(present)


def _any(*exprs: pl.Expr | None) -> pl.Expr | None:
    present = [e for e in exprs if e is not None]
    if not present:
        return None
    out = present[0].fill_null(False)
    for e in present[1:]:
        out = out | e.fill_null(False)
    return out


def _where(cond: pl.Expr, expr: pl.Expr | None) -> pl.Expr | None:
    return None if expr is None else pl.when(cond).then(expr)


def _branch(cond: pl.Expr, yes: pl.Expr | None, no: pl.Expr | None) -> pl.Expr | None:
    if yes is None and no is None:
        return None
    return (
        pl.when(cond).then(yes if yes is not None else pl.lit(None)).otherwise(no if no is not None else pl.lit(None))
    )


def _undefined_message(obj: Any, name: str) -> str:
    """StrictUndefined's own wording, e.g. `'None' has no attribute 'amount'`."""
    return "UndefinedError: " + StrictUndefined(obj=obj, name=name)._undefined_message


def consume(v: Val) -> pl.Expr | None:
    """Where using `v` (printing, testing, calling) raises."""
    return _first(v.err, v.undef)


def text(v: Val) -> pl.Expr:
    """Python's `str(v)`, for the rows where `v` is defined."""
    if v.kind == "mixed":
        if v.text_ is None:
            raise NotCompilable("printing a namespace")
        return v.text_
    raw = v.raw
    if v.kind == "none":
        return _NONE
    assert raw is not None
    if v.kind == "str":
        return raw.fill_null("None")
    if v.kind in ("int", "decimal", "date"):
        return raw.cast(pl.String()).fill_null("None")
    if v.kind == "bool":
        return pl.when(raw).then(pl.lit("True")).when(raw.not_()).then(pl.lit("False")).otherwise(_NONE)
    if v.kind == "datetime":
        micro = pl.when(raw.dt.microsecond() != 0).then(raw.dt.strftime(".%6f")).otherwise(pl.lit(""))
        return pl.concat_str(raw.dt.strftime("%Y-%m-%d %H:%M:%S"), micro, pl.lit("+00:00")).fill_null("None")
    raise NotCompilable(f"printing a {v.kind} value")


def _text_or_none(cond: pl.Expr, yes: Val, no: Val) -> pl.Expr | None:
    """`str()` of a two-way choice, or None when one side cannot be printed (then it never is)."""
    try:
        return pl.when(cond).then(text(yes)).otherwise(text(no))
    except NotCompilable:
        return None


def truthy(v: Val) -> pl.Expr:
    """Python's `bool(v)` (Jinja2's `if` and `or`)."""
    if v.kind == "mixed":
        assert v.truthy_ is not None
        return v.truthy_
    if v.kind == "none":
        return pl.lit(False)
    raw = v.raw
    assert raw is not None
    if v.kind == "str":
        return (raw.str.len_bytes() > 0).fill_null(False)
    if v.kind in ("int", "decimal"):
        return (raw != 0).fill_null(False)
    if v.kind in ("date", "datetime"):
        return raw.is_not_null()
    if v.kind in ("bool", "ns", "ns?"):
        return raw.fill_null(False)
    if v.kind == "list":
        return (raw.list.len() > 0).fill_null(False)
    raise NotCompilable(f"truth value of a {v.kind}")


def html_escape(expr: pl.Expr) -> pl.Expr:
    """markupsafe.escape of a plain string (the order matters: `&` first)."""
    for char, entity in (("&", "&amp;"), (">", "&gt;"), ("<", "&lt;"), ("'", "&#39;"), ('"', "&#34;")):
        expr = expr.str.replace_all(char, entity, literal=True)
    return expr


# --- the compiler ----------------------------------------------------------------------------------


@dataclass
class _Loop:
    """A `{% for %}` whose body is rendered on the exploded frame and joined back per row."""

    index: int
    items: pl.Expr
    body: Block

    @property
    def prefix(self) -> str:
        return f"__loop{self.index}"


@dataclass
class _Scope:
    autoescape: bool
    loops: list[_Loop] = field(default_factory=list)
    locals: dict[str, Val] = field(default_factory=dict)
    in_loop: bool = False
    element: bool = False  # compiling a loop body inside `list.eval`
    outer: bool = False  # … and it read a variable other than the item and `loop`


_FILTERS = (
    "default",
    "d",
    "upper",
    "lower",
    "capitalize",
    "title",
    "trim",
    "round",
    "length",
    "count",
    "join",
    "format",
    "string",
    "replace",
)
#: `"… %.2f …" | format(x)`: one conversion, `%s`, `%d`/`%i` or `%.Nf` with 2 ≤ N ≤ 4 places.
_FORMAT = re.compile(r"^(?P<pre>(?:[^%]|%%)*)%(?P<spec>s|d|i|\.(?P<places>[2-4])f)(?P<post>(?:[^%]|%%)*)$")
#: Above this, `%.Nf` of a Decimal (through a binary float) may not print the decimal's digits.
_FLOAT_EXACT_BELOW = 10**12


class _Compiler:
    def __init__(self, env: SandboxedEnvironment, autoescape: bool) -> None:
        self.env = env
        self.scope = _Scope(autoescape)

    # statements
    def block(self, body: Sequence[nodes.Node]) -> Block:
        pieces: list[pl.Expr] = []
        errs: list[pl.Expr | None] = []
        fbs: list[pl.Expr | None] = []
        for node in body:
            for b in self.statement(node):
                pieces.append(b.text)
                errs.append(b.err)
                fbs.append(b.fb)
        if not pieces:
            return Block(pl.lit(""))
        joined = pieces[0] if len(pieces) == 1 else pl.concat_str(pieces)
        return Block(joined, _first(*errs), _any(*fbs))

    def statement(self, node: nodes.Node) -> Iterator[Block]:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    yield Block(pl.lit(child.data))
                    continue
                v = self.expr(child)
                out = text(v)
                yield Block(html_escape(out) if self.scope.autoescape else out, consume(v), v.fb)
        elif isinstance(node, nodes.If):
            yield self.if_(node.test, node.body, list(node.elif_), node.else_)  # type: ignore[arg-type]
        elif isinstance(node, nodes.For):
            yield self.for_(node)
        else:
            raise NotCompilable(f"statement {type(node).__name__}")

    def if_(self, test: nodes.Expr, body: list[nodes.Node], elifs: list[nodes.If], else_: list[nodes.Node]) -> Block:
        cond = self.expr(test)
        yes = self.block(body)
        if elifs:
            first = elifs[0]
            no = self.if_(first.test, first.body, elifs[1:], else_)  # type: ignore[arg-type]
        else:
            no = self.block(else_)
        t = truthy(cond)
        return Block(
            pl.when(t).then(yes.text).otherwise(no.text),
            _first(consume(cond), _branch(t, yes.err, no.err)),
            _any(cond.fb, _branch(t, yes.fb, no.fb)),
        )

    def for_(self, node: nodes.For) -> Block:
        if node.recursive or node.test is not None:
            raise NotCompilable("recursive or filtered loop")
        if self.scope.in_loop:
            raise NotCompilable("nested loop")
        if not isinstance(node.target, nodes.Name):
            raise NotCompilable("loop target is not a single name")
        items = self.expr(node.iter)  # type: ignore[arg-type]
        if items.kind != "list" or items.raw is None:
            raise NotCompilable(f"loop over a {items.kind}")
        else_ = self.block(node.else_)
        some = (items.raw.list.len() > 0).fill_null(False)
        # A body that reads only the item and `loop` runs inside the list (`list.eval`); one that
        # reads other variables runs on the exploded frame, joined back per row.
        body = self.loop_body(node, element=True)
        if body is not None:
            text_ = items.raw.list.eval(body.text).list.join("")
            err = items.raw.list.eval(body.err).list.drop_nulls().list.first() if body.err is not None else None
            fb = items.raw.list.eval(body.fb.fill_null(False)).list.any() if body.fb is not None else None
        else:
            exploded = self.loop_body(node, element=False)
            assert exploded is not None
            loop = _Loop(len(self.scope.loops), items.raw, exploded)
            self.scope.loops.append(loop)
            p = loop.prefix
            text_, err, fb = pl.col(f"{p}_text"), pl.col(f"{p}_err"), pl.col(f"{p}_fb")
        return Block(
            pl.when(some).then(text_).otherwise(else_.text),
            _first(consume(items), _branch(some, err, else_.err)),
            _any(items.fb, _branch(some, fb, else_.fb)),
        )

    def loop_body(self, node: nodes.For, *, element: bool) -> Block | None:
        """The loop body compiled over `pl.element()` (None if it reads more) or the exploded frame."""
        assert isinstance(node.target, nodes.Name)
        saved = dict(self.scope.locals)
        self.scope.in_loop, self.scope.element, self.scope.outer = True, element, False
        self.scope.locals[node.target.name] = Val("str", pl.element() if element else pl.col("__elem"))
        self.scope.locals["loop"] = Val("loop")
        try:
            body = self.block(node.body)
            outer = self.scope.outer
        finally:
            self.scope.in_loop, self.scope.element = False, False
            self.scope.locals = saved
        if element and (outer or not _uses_element(node)):
            return None
        return body

    # expressions
    def expr(self, node: nodes.Expr) -> Val:
        method = getattr(self, f"e_{type(node).__name__}", None)
        if method is None:
            raise NotCompilable(f"expression {type(node).__name__}")
        return method(node)  # type: ignore[no-any-return]

    def e_Const(self, node: nodes.Const) -> Val:
        value = node.value
        if value is None:
            return Val("none")
        if isinstance(value, bool):
            return Val("bool", pl.lit(value))
        if isinstance(value, int):
            return Val("int", pl.lit(value, dtype=pl.Int64()))
        if isinstance(value, str):
            return Val("str", pl.lit(value, dtype=pl.String()))
        raise NotCompilable(f"constant of type {type(value).__name__}")

    def e_Name(self, node: nodes.Name) -> Val:
        name = node.name
        if name in self.scope.locals:
            return self.scope.locals[name]
        self.scope.outer = True
        kind = VARIABLES.get(name)
        if kind is None:
            if name in self.env.globals:
                raise NotCompilable(f"global {name!r}")
            return Val("none", undef=pl.lit("UndefinedError: " + StrictUndefined(name=name)._undefined_message))
        if kind in ("ns", "ns?"):
            return Val(kind, pl.col(name) if kind == "ns?" else pl.lit(True), ns=name)
        if kind == "list":  # a missing list is an empty one, as `template_variables` gives it
            return Val(kind, pl.col(name).fill_null(pl.lit([], dtype=pl.List(pl.String()))))
        return Val(kind, pl.col(name))

    def e_Getattr(self, node: nodes.Getattr) -> Val:
        base = self.expr(node.node)
        attr = node.attr
        used = consume(base)  # an attribute of an Undefined raises
        if base.kind == "loop":
            return self.loop_attr(attr)
        if base.kind in ("ns", "ns?"):
            assert base.ns is not None and base.raw is not None
            path = f"{base.ns}.{attr}"
            absent = (
                pl.when(base.raw.not_().fill_null(True)).then(pl.lit(_undefined_message(None, attr)))
                if base.kind == "ns?"
                else None
            )
            if path in VARIABLES:
                return Val(VARIABLES[path], pl.col(path), undef=absent, err=used, fb=base.fb)
            if hasattr(dict, attr):
                raise NotCompilable(f"dict attribute {attr!r}")
            missing = pl.lit(_undefined_message({}, attr))
            return Val("none", undef=missing if absent is None else pl.coalesce(absent, missing), err=used, fb=base.fb)
        if base.kind in ("date", "datetime") and attr == "strftime":
            return Val("method", base.raw, undef=base.undef, err=base.err, fb=base.fb, method=f"{base.kind}.strftime")
        raise NotCompilable(f"attribute {attr!r} of a {base.kind}")

    def loop_attr(self, attr: str) -> Val:
        if self.scope.element:
            idx, n = pl.int_range(pl.len(), dtype=pl.Int64()), pl.len().cast(pl.Int64())
        else:
            idx, n = pl.col("__idx"), pl.col("__len")
        values = {
            "index": Val("int", idx + 1),
            "index0": Val("int", idx),
            "revindex": Val("int", n - idx),
            "revindex0": Val("int", n - idx - 1),
            "first": Val("bool", idx == 0),
            "last": Val("bool", idx == n - 1),
            "length": Val("int", n),
        }
        if attr not in values:
            raise NotCompilable(f"loop.{attr}")
        return values[attr]

    def e_Call(self, node: nodes.Call) -> Val:
        func = self.expr(node.node)
        if func.kind != "method" or node.kwargs or node.dyn_args or node.dyn_kwargs:
            raise NotCompilable("call")
        if len(node.args) != 1 or not isinstance(node.args[0], nodes.Const) or not isinstance(node.args[0].value, str):
            raise NotCompilable("strftime without one constant format")
        fmt = node.args[0].value
        if "".join(_STRFTIME.findall(fmt)) != fmt:
            raise NotCompilable(f"strftime format {fmt!r}")
        assert func.raw is not None
        raw = func.raw if func.method == "datetime.strftime" else func.raw.cast(pl.Datetime("us"))
        none = pl.when(func.raw.is_null()).then(pl.lit(_undefined_message(None, "strftime")))
        # glibc prints years before 1000 unpadded, chrono pads them: leave those to the sandbox
        early = (func.raw.dt.year() < 1000).fill_null(False)
        return Val(
            "str",
            raw.dt.strftime(fmt),
            err=_first(func.err, func.undef, none),
            fb=_any(func.fb, early if "%" in fmt else None),
        )

    def e_Or(self, node: nodes.Or) -> Val:
        return self.boolean(node, take_left_when_truthy=True)

    def e_And(self, node: nodes.And) -> Val:
        return self.boolean(node, take_left_when_truthy=False)

    def boolean(self, node: nodes.BinExpr, *, take_left_when_truthy: bool) -> Val:
        a, b = self.expr(node.left), self.expr(node.right)
        ta = truthy(a)
        left = ta if take_left_when_truthy else ta.not_()
        err = _first(consume(a), _where(left.not_(), b.err))
        undef = _where(left.not_(), b.undef)
        fb = _any(a.fb, _where(left.not_(), b.fb))
        if a.kind == b.kind and a.kind in ("str", "int", "decimal", "date", "datetime", "bool") and a.raw is not None:
            assert b.raw is not None
            return Val(a.kind, pl.when(left).then(a.raw).otherwise(b.raw), undef=undef, err=err, fb=fb)
        return Val(
            "mixed",
            undef=undef,
            err=err,
            fb=fb,
            text_=_text_or_none(left, a, b),
            truthy_=pl.when(left).then(ta).otherwise(truthy(b)),
        )

    def e_Not(self, node: nodes.Not) -> Val:
        v = self.expr(node.node)
        return Val("bool", truthy(v).not_(), err=consume(v), fb=v.fb)

    def e_CondExpr(self, node: nodes.CondExpr) -> Val:
        if node.expr2 is None:
            raise NotCompilable("inline if without else")
        cond, yes, no = self.expr(node.test), self.expr(node.expr1), self.expr(node.expr2)
        t = truthy(cond)
        err = _first(consume(cond), _branch(t, yes.err, no.err))
        undef = _branch(t, yes.undef, no.undef)
        fb = _any(cond.fb, _branch(t, yes.fb, no.fb))
        if yes.kind == no.kind and yes.kind in ("str", "int", "decimal", "date", "datetime", "bool"):
            assert yes.raw is not None and no.raw is not None
            return Val(yes.kind, pl.when(t).then(yes.raw).otherwise(no.raw), undef=undef, err=err, fb=fb)
        return Val(
            "mixed",
            undef=undef,
            err=err,
            fb=fb,
            text_=_text_or_none(t, yes, no),
            truthy_=pl.when(t).then(truthy(yes)).otherwise(truthy(no)),
        )

    def e_Concat(self, node: nodes.Concat) -> Val:
        parts = [self.expr(n) for n in node.nodes]
        return Val(
            "str",
            pl.concat_str([text(p) for p in parts]),
            err=_first(*(consume(p) for p in parts)),
            fb=_any(*(p.fb for p in parts)),
        )

    def e_Compare(self, node: nodes.Compare) -> Val:
        if len(node.ops) != 1:
            raise NotCompilable("chained comparison")
        op = node.ops[0].op
        a, b = self.expr(node.expr), self.expr(node.ops[0].expr)
        err = _first(consume(a), consume(b))
        fb = _any(a.fb, b.fb)
        numeric = {"int", "decimal"}
        if op in ("eq", "ne"):
            if a.kind == "none" or b.kind == "none":
                other = b if a.kind == "none" else a
                same = pl.lit(True) if other.kind == "none" else other.raw.is_null()  # type: ignore[union-attr]
            elif a.kind == b.kind or {a.kind, b.kind} <= numeric:
                if a.kind not in ("str", "int", "decimal", "date", "bool"):
                    raise NotCompilable(f"comparing {a.kind} values")
                assert a.raw is not None and b.raw is not None
                both_null = a.raw.is_null() & b.raw.is_null()
                same = pl.when(both_null).then(pl.lit(True)).otherwise((a.raw == b.raw).fill_null(False))
            else:
                raise NotCompilable(f"comparing {a.kind} with {b.kind}")
            return Val("bool", same if op == "eq" else same.not_(), err=err, fb=fb)
        symbols = {"lt": "<", "gt": ">", "lteq": "<=", "gteq": ">="}
        if op not in symbols:
            raise NotCompilable(f"operator {op}")
        if not ({a.kind, b.kind} <= numeric or a.kind == b.kind == "date"):
            raise NotCompilable(f"ordering {a.kind} with {b.kind}")
        assert a.raw is not None and b.raw is not None
        result = {"lt": a.raw < b.raw, "gt": a.raw > b.raw, "lteq": a.raw <= b.raw, "gteq": a.raw >= b.raw}[op]

        def type_error(left: str, right: str) -> str:
            return f"TypeError: '{symbols[op]}' not supported between instances of '{left}' and '{right}'"

        null_err = (
            pl.when(a.raw.is_null() & b.raw.is_null())
            .then(pl.lit(type_error("NoneType", "NoneType")))
            .when(a.raw.is_null())
            .then(pl.lit(type_error("NoneType", _TYPE_NAMES[b.kind])))
            .when(b.raw.is_null())
            .then(pl.lit(type_error(_TYPE_NAMES[a.kind], "NoneType")))
        )
        return Val("bool", result, err=_first(err, null_err), fb=fb)

    def e_Test(self, node: nodes.Test) -> Val:
        if node.args or node.kwargs:
            raise NotCompilable(f"test {node.name} with arguments")
        v = self.expr(node.node)
        is_undef = v.undef.is_not_null() if v.undef is not None else pl.lit(False)
        if node.name == "defined":
            return Val("bool", is_undef.not_(), err=v.err, fb=v.fb)
        if node.name == "undefined":
            return Val("bool", is_undef, err=v.err, fb=v.fb)
        if node.name == "none":
            null = pl.lit(True) if v.kind == "none" else (v.raw.is_null() if v.raw is not None else None)
            if null is None or v.kind in ("ns", "mixed"):
                raise NotCompilable(f"'is none' on a {v.kind}")
            return Val("bool", is_undef.not_() & null, err=v.err, fb=v.fb)
        raise NotCompilable(f"test {node.name!r}")

    def e_Filter(self, node: nodes.Filter) -> Val:
        if node.name not in _FILTERS or node.dyn_args or node.dyn_kwargs:
            raise NotCompilable(f"filter {node.name!r}")
        if node.node is None:
            raise NotCompilable("filter block")
        if node.name == "format":
            return self.format_(node)
        v = self.expr(node.node)
        args = [self.const(a) for a in node.args]
        kwargs: dict[str, Any] = {str(k.key): self.const(k.value) for k in node.kwargs}
        name = {"d": "default", "count": "length"}.get(node.name, node.name)
        return getattr(self, f"f_{name}")(node, v, *args, **kwargs)  # type: ignore[no-any-return]

    def format_(self, node: nodes.Filter) -> Val:
        """Python's `%` formatting of one value; a Decimal goes through float for `%f`, as in Python."""
        assert node.node is not None
        if not isinstance(node.node, nodes.Const) or not isinstance(node.node.value, str):
            raise NotCompilable("format of a non-constant string")
        m = _FORMAT.match(node.node.value)
        if m is None or len(node.args) != 1 or node.kwargs:
            raise NotCompilable(f"format string {node.node.value!r}")
        v = self.expr(node.args[0])
        spec, places = m.group("spec"), m.group("places")
        # an Undefined meets Python's % protocol, not StrictUndefined's messages: the sandbox says
        unknown = v.undef.is_not_null() if v.undef is not None else None
        if spec == "s":  # str() of an Undefined raises, like printing it
            value, none_err, unknown = text(v), v.undef, None
        elif v.kind not in ("int", "decimal"):
            raise NotCompilable(f"format %{spec} of a {v.kind}")
        else:
            assert v.raw is not None
            if spec in ("d", "i"):
                value = v.raw.cast(pl.Int64()).cast(pl.String()) if v.kind == "decimal" else v.raw.cast(pl.String())
                message = f"TypeError: %{spec} format: a real number is required, not NoneType"
            else:
                n = int(places)
                if v.kind == "decimal":
                    value = pl.concat_str(v.raw.cast(pl.String()), pl.lit("0" * (n - 2)))
                else:
                    value = pl.concat_str(v.raw.cast(pl.String()), pl.lit("." + "0" * n))
                message = "TypeError: must be real number, not NoneType"
                big = (v.raw.abs() >= _FLOAT_EXACT_BELOW).fill_null(False)
                unknown = _any(unknown, big)
            none_err = pl.when(v.raw.is_null()).then(pl.lit(message))
        pre, post = m.group("pre").replace("%%", "%"), m.group("post").replace("%%", "%")
        return Val(
            "str",
            pl.concat_str(pl.lit(pre), value, pl.lit(post)),
            err=_first(v.err, none_err),
            fb=_any(v.fb, unknown),
        )

    def const(self, node: nodes.Expr) -> Any:
        if not isinstance(node, nodes.Const):
            raise NotCompilable("filter argument is not a constant")
        return node.value

    def f_default(self, node: nodes.Filter, v: Val, default_value: Any = "", boolean: bool = False) -> Val:
        d = self.e_Const(nodes.Const(default_value))
        use_default = v.undef.is_not_null() if v.undef is not None else pl.lit(False)
        if boolean:
            use_default = use_default | truthy(v).not_()
        if v.kind == d.kind and v.raw is not None and d.raw is not None:
            return Val(v.kind, pl.when(use_default).then(d.raw).otherwise(v.raw), err=v.err, fb=v.fb)
        return Val(
            "mixed",
            err=v.err,
            fb=v.fb,
            text_=_text_or_none(use_default, d, v),
            truthy_=pl.when(use_default).then(truthy(d)).otherwise(truthy(v)),
        )

    def _string_filter(self, v: Val, build: Callable[[pl.Expr], pl.Expr], extra_fb: str | None = None) -> Val:
        s = text(v)
        unsafe = s.str.contains(_CASE_SAFE).not_()
        if extra_fb is not None:
            unsafe = unsafe | s.str.contains(extra_fb)
        return Val("str", build(s), err=consume(v), fb=_any(v.fb, unsafe))

    def f_upper(self, node: nodes.Filter, v: Val) -> Val:
        return self._string_filter(v, lambda s: s.str.to_uppercase())

    def f_lower(self, node: nodes.Filter, v: Val) -> Val:
        return self._string_filter(v, lambda s: s.str.to_lowercase())

    def f_capitalize(self, node: nodes.Filter, v: Val) -> Val:
        return self._string_filter(
            v,
            lambda s: pl.concat_str(s.str.slice(0, 1).str.to_uppercase(), s.str.slice(1).str.to_lowercase()),
            _TITLECASE_DIFFERS,
        )

    def f_title(self, node: nodes.Filter, v: Val) -> Val:
        # Jinja2: words split on runs of `-`, whitespace, `(`, `{`, `[`, `<`; each word's first
        # character upper-cased, the rest lower-cased
        sep = "-" + re.escape(_PY_SPACE).replace("-", "") + r"(\{\[<"
        token = rf"[{sep}]+|[^{sep}]+"

        def build(s: pl.Expr) -> pl.Expr:
            word = pl.element()
            cased = (
                pl.when(word.str.contains(rf"^[{sep}]"))
                .then(word)
                .otherwise(pl.concat_str(word.str.slice(0, 1).str.to_uppercase(), word.str.slice(1).str.to_lowercase()))
            )
            return s.str.extract_all(token).list.eval(cased).list.join("")

        return self._string_filter(v, build, _TITLECASE_DIFFERS)

    def f_string(self, node: nodes.Filter, v: Val) -> Val:
        # Jinja2's `string` is `soft_str`: str() of the value (None prints "None")
        return Val("str", text(v), err=consume(v), fb=v.fb)

    def f_replace(self, node: nodes.Filter, v: Val, old: Any = None, new: Any = None, count: Any = None) -> Val:
        # Jinja2's `replace` on a plain (non-Markup) value with plain constants is str.replace; the
        # result is escaped when printed, as any str
        if not isinstance(old, str) or not isinstance(new, str) or count is not None or old == "":
            raise NotCompilable("replace other than of two non-empty text constants")
        return Val("str", text(v).str.replace_all(old, new, literal=True), err=consume(v), fb=v.fb)

    def f_trim(self, node: nodes.Filter, v: Val, chars: Any = None) -> Val:
        if chars is not None:
            raise NotCompilable("trim with characters")
        return Val("str", text(v).str.strip_chars(_PY_SPACE), err=consume(v), fb=v.fb)

    def f_length(self, node: nodes.Filter, v: Val) -> Val:
        if v.kind == "list":
            assert v.raw is not None
            return Val("int", v.raw.list.len(), err=consume(v), fb=v.fb)
        if v.kind == "str":
            assert v.raw is not None
            none = pl.when(v.raw.is_null()).then(pl.lit("TypeError: object of type 'NoneType' has no len()"))
            return Val("int", v.raw.str.len_chars(), err=_first(consume(v), none), fb=v.fb)
        raise NotCompilable(f"length of a {v.kind}")

    def f_join(self, node: nodes.Filter, v: Val, d: Any = "", attribute: Any = None) -> Val:
        if v.kind != "list" or attribute is not None or not isinstance(d, str):
            raise NotCompilable("join of something other than a list of texts")
        assert v.raw is not None
        joined = v.raw.list.eval(pl.element().fill_null("None")).list.join(d)
        return Val("str", joined, err=consume(v), fb=v.fb)

    def f_round(self, node: nodes.Filter, v: Val, precision: Any = 0, method: Any = "common") -> Val:
        if method != "common" or not isinstance(precision, int) or isinstance(precision, bool) or precision < 0:
            raise NotCompilable("round other than common to a non-negative integer precision")
        if v.kind == "int":
            return v
        if v.kind != "decimal":
            raise NotCompilable(f"round of a {v.kind}")
        assert v.raw is not None
        scale = 2
        if precision >= scale:
            rounded = v.raw.cast(pl.Decimal(38, precision))
        else:
            rounded = v.raw.round(precision, mode="half_to_even").cast(pl.Decimal(38, precision))
        # Decimal keeps the sign of a negative value rounded to zero: round(Decimal("-0.40")) == Decimal("-0")
        sign = pl.when((v.raw < 0) & (rounded == 0)).then(pl.lit("-")).otherwise(pl.lit(""))
        none = pl.when(v.raw.is_null()).then(pl.lit("TypeError: type NoneType doesn't define __round__ method"))
        # round() of an Undefined does not ask it anything: Python finds no __round__ on its type
        undefined = (
            _where(
                v.undef.is_not_null(),
                pl.lit(f"TypeError: type {StrictUndefined.__name__} doesn't define __round__ method"),
            )
            if v.undef is not None
            else None
        )
        return Val(
            "mixed",
            err=_first(v.err, undefined, none),
            fb=v.fb,
            text_=pl.concat_str(sign, rounded.cast(pl.String())),
            truthy_=(rounded != 0).fill_null(False),
        )


def _uses_element(node: nodes.For) -> bool:
    """Whether the loop body reads its item (a body of constants cannot run inside the list)."""
    assert isinstance(node.target, nodes.Name)
    target = node.target.name
    return any(n.name == target for body in node.body for n in body.find_all(nodes.Name))


# --- compiled templates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A compiled template: the loops to pre-render, then one block expression."""

    block: Block
    loops: tuple[_Loop, ...]


def compile_template(env: SandboxedEnvironment, source: str, *, autoescape: bool) -> Plan:
    """Jinja2 source → `Plan`; raises `NotCompilable` (with the reason) outside the subset."""
    tree = env.parse(source)
    compiler = _Compiler(env, autoescape)
    block = compiler.block(tree.body)
    return Plan(block, tuple(compiler.scope.loops))


def evaluate(plan: Plan, variables: pl.DataFrame) -> pl.DataFrame:
    """`text`, `error` and `fallback` per row of the variables frame, with no per-row Python."""
    work = variables
    for loop in plan.loops:
        work = work.with_columns(_loop_columns(loop, work))
    b = plan.block
    return work.with_columns(
        b.text.alias("text"),
        (b.err if b.err is not None else pl.lit(None, dtype=pl.String())).alias("error"),
        (b.fb if b.fb is not None else pl.lit(False)).alias("fallback"),
    ).select(
        pl.when(pl.col("error").is_null()).then(pl.col("text")).cast(pl.String()).alias("text"),
        pl.col("error").cast(pl.String()),
        pl.col("fallback").fill_null(False),
    )


def _loop_columns(loop: _Loop, frame: pl.DataFrame) -> list[pl.Series]:
    p = loop.prefix
    items = loop.items
    exploded = (
        frame.with_row_index("__row")
        .with_columns(
            pl.when(items.list.len() > 0).then(items).otherwise(pl.lit(None)).alias("__elem"),
            items.list.len().fill_null(0).cast(pl.Int64()).alias("__len"),
        )
        .explode("__elem")
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int64()).over("__row").alias("__idx"))
    )
    body = loop.body
    agg = exploded.group_by("__row", maintain_order=True).agg(
        body.text.str.join("").alias(f"{p}_text"),
        (body.err if body.err is not None else pl.lit(None, dtype=pl.String())).drop_nulls().first().alias(f"{p}_err"),
        (body.fb if body.fb is not None else pl.lit(False)).any().alias(f"{p}_fb"),
    )
    return [agg.get_column(f"{p}_text"), agg.get_column(f"{p}_err"), agg.get_column(f"{p}_fb")]


@dataclass
class CompiledTemplate:
    """A template in both forms: the sandbox's (validation, fallback rows) and the compiled one."""

    name: str
    sandbox: Template
    autoescape: bool
    plan: Plan | None
    reason: str | None = None

    def render(self, variables: pl.DataFrame) -> pl.DataFrame:
        """`text` and `error` (`Type: message`, null when it rendered) per row of `variables`."""
        if self.plan is None:
            return self._sandbox_rows(variables)
        try:
            out = evaluate(self.plan, variables)
        except pl.exceptions.PolarsError as exc:  # a compiler defect must cost speed, never a message
            log.warning("template %s: compiled form failed (%s); rendering in the sandbox", self.name, exc)
            return self._sandbox_rows(variables)
        fallback = out.get_column("fallback")
        if not fallback.any():
            return out.drop("fallback")
        rows = fallback.arg_true()
        redone = self._sandbox_rows(variables.filter(fallback))
        return pl.DataFrame(
            [
                out.get_column("text").scatter(rows, redone.get_column("text")),
                out.get_column("error").scatter(rows, redone.get_column("error")),
            ]
        )

    def _sandbox_rows(self, variables: pl.DataFrame) -> pl.DataFrame:
        texts: list[str | None] = []
        errors: list[str | None] = []
        for context in variables_to_dicts(variables):
            try:
                texts.append(self.sandbox.render(**context))
                errors.append(None)
            except Exception as exc:  # any failure of one customer's message is that message's skip reason
                texts.append(None)
                errors.append(f"{type(exc).__name__}: {exc}")
        return pl.DataFrame({"text": texts, "error": errors}, schema={"text": pl.String(), "error": pl.String()})


def build(
    name: str, env: SandboxedEnvironment, sandbox: Template, source: str, *, autoescape: bool
) -> CompiledTemplate:
    """Compile `source`; outside the subset the template keeps only its sandbox form (logged)."""
    try:
        plan: Plan | None = compile_template(env, source, autoescape=autoescape)
        reason = None
    except NotCompilable as exc:
        plan, reason = None, str(exc)
        log.warning("template %s is rendered in the sandbox per row (not compiled: %s)", name, reason)
    except Exception as exc:  # a compiler defect must cost speed, never a message
        plan, reason = None, f"compiler failed: {type(exc).__name__}: {exc}"
    if reason is not None and plan is None and reason.startswith("compiler failed"):
        log.warning("template %s is rendered in the sandbox per row (%s)", name, reason)
    return CompiledTemplate(name, sandbox, autoescape, plan, reason)


def variables_to_dicts(variables: pl.DataFrame) -> list[dict[str, Any]]:
    """The variables frame as the nested dicts a Jinja2 template sees (`bonus` None when absent)."""
    out: list[dict[str, Any]] = []
    columns = [c for c in VARIABLES if c in variables.columns]
    for row in variables.select(columns).iter_rows(named=True):
        context: dict[str, Any] = {}
        for path, kind in VARIABLES.items():
            if kind in ("ns", "ns?"):
                context[path] = {} if kind == "ns" or row.get(path) else None
        for path, kind in VARIABLES.items():
            if kind in ("ns", "ns?"):
                continue
            value = row.get(path)
            if "." in path:
                ns, key = path.split(".", 1)
                if context[ns] is not None:
                    context[ns][key] = value
            else:
                context[path] = list(value or []) if kind == "list" else value
        out.append(context)
    return out


def empty_variables() -> pl.DataFrame:
    return pl.DataFrame(schema=VARIABLE_DTYPES)


def sample_variables(rows: Sequence[Mapping[str, Any]]) -> pl.DataFrame:
    """A variables frame from nested dicts (tests, validation samples); absent paths are null."""
    flat: list[dict[str, Any]] = []
    for context in rows:
        record: dict[str, Any] = {}
        for path, kind in VARIABLES.items():
            if kind in ("ns", "ns?"):
                record[path] = context.get(path) is not None
            elif "." in path:
                ns, key = path.split(".", 1)
                record[path] = (context.get(ns) or {}).get(key)
            else:
                record[path] = context.get(path)
        flat.append(record)
    return pl.DataFrame(flat, schema=VARIABLE_DTYPES, orient="row")


__all__ = [
    "VARIABLES",
    "VARIABLE_DTYPES",
    "CompiledTemplate",
    "NotCompilable",
    "Plan",
    "build",
    "compile_template",
    "empty_variables",
    "evaluate",
    "sample_variables",
    "variables_to_dicts",
]
