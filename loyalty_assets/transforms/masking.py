"""Masking of contact details shown in previews, logs and the UI.

A marketer checking a segment needs to recognise a few members, not to copy their addresses: keep
the first character of an email and its domain (`i***@example.com`), and the first two and last two
characters of a phone (`+7*******12`, always seven stars so the length does not leak either).
Expression and plain-text versions give the same result, so a preview and a log line agree.
"""

from __future__ import annotations

import re

import polars as pl

_STARS = "*******"
_EMAIL = re.compile(r"^(.)[^@]*@(.+)$")


def mask_email(expr: pl.Expr) -> pl.Expr:
    """`ivan.petrov@example.com` → `i***@example.com`; text without `@` → `***`; null stays null."""
    return (
        pl.when(expr.str.contains(r"^.[^@]*@.+$"))
        .then(expr.str.replace(r"^(.)[^@]*@", "${1}***@"))
        .when(expr.is_not_null())
        .then(pl.lit("***"))
    )


def mask_phone(expr: pl.Expr) -> pl.Expr:
    """`+79161234512` → `+7*******12`; fewer than 5 characters → `***`; null stays null."""
    return (
        pl.when(expr.str.len_chars() >= 5)
        .then(pl.concat_str(expr.str.slice(0, 2), pl.lit(_STARS), expr.str.slice(-2)))
        .when(expr.is_not_null())
        .then(pl.lit("***"))
    )


def mask_email_str(email: str | None) -> str | None:
    """Plain-text twin of `mask_email`."""
    if email is None:
        return None
    m = _EMAIL.match(email)
    return f"{m.group(1)}***@{m.group(2)}" if m else "***"


def mask_phone_str(phone: str | None) -> str | None:
    """Plain-text twin of `mask_phone`."""
    if phone is None:
        return None
    return f"{phone[:2]}{_STARS}{phone[-2:]}" if len(phone) >= 5 else "***"
