"""Parsers of the command line's number values: USD amounts and seconds, finite and in ASCII digits.

typer's own float parsing takes ``nan``, ``inf`` and ``1e400``; ``Decimal`` and ``float`` read Arabic-Indic
and other Unicode digits. Both would pass a value no one meant, so these parsers refuse them.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation

import typer

from budgetq.settings import MAX_CAP_USD


def usd(value: str) -> Decimal:
    """A non-negative, finite amount of USD written with ASCII digits (``12.50``)."""
    text = value.strip()
    try:
        if not text.isascii():
            raise InvalidOperation
        amount = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not an amount of USD (e.g. 12.50)") from None
    if not amount.is_finite() or amount < 0:
        raise typer.BadParameter(f"{value!r} is not a cap: give 0 or more USD") from None
    if amount > MAX_CAP_USD:
        raise typer.BadParameter(f"{value!r} is not a cap: give at most {MAX_CAP_USD:,} USD")
    return amount


def seconds(value: str | float) -> float:
    """A finite, non-negative number of seconds written with ASCII digits (``90`` or ``2.5``)."""
    text = str(value).strip()  # typer passes the option's default as the float it is
    try:
        if not text.isascii():
            raise ValueError
        amount = float(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number of seconds (e.g. 600)") from None
    if not math.isfinite(amount) or amount < 0:
        raise typer.BadParameter(f"{value!r} is not a timeout: give a finite number of seconds, 0 or more")
    return amount
