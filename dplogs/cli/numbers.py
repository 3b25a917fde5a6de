"""Numeric options as a person types them: ASCII decimal or scientific notation only.

Python's ``float()`` also reads ``1_0`` as 10 and other scripts' digits (``١``) as ASCII ones, so a
privacy parameter with a typo (``--epsilon 1_0``) ran at a budget nobody meant. ``nan`` and
``inf`` pass through to the checks that say why they are refused.

>>> NUMBER.convert("1e-6", None, None), NUMBER.convert("-inf", None, None)
(1e-06, -inf)
"""

from __future__ import annotations

import re

import click

_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)


class Number(click.ParamType):
    name = "number"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float | int) and not isinstance(value, bool):
            return float(value)
        text = str(value).strip()
        if not _DECIMAL.fullmatch(text):
            self.fail(f"{value!r} is not a number (write it like 0.5, 1e-6 or 10)", param, ctx)
        return float(text)


NUMBER = Number()
