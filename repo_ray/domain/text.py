"""Text helpers shared by the simulator, the rules and evaluation: numbers, prices, scripts."""

from __future__ import annotations

import re

_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:[.,]\d+)*(?:\.\d+)?")
_PRICE = re.compile(r"(?:¥|CNY\s?|RMB\s?|￥)\s?(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s?(?:元|块|yuan|CNY|RMB)", re.I)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def extract_numbers(text: str) -> list[float]:
    """Every number written in the text, in order (thousands separators removed)."""
    out = []
    for m in _NUMBER.finditer(text):
        raw = m.group(0).replace(",", "")
        try:
            out.append(float(raw))
        except ValueError:
            continue
    return out


def extract_prices(text: str) -> list[float]:
    """Numbers written as prices (with a currency sign or unit), in order."""
    return [float(a or b) for a, b in _PRICE.findall(text)]


def cjk_count(text: str) -> int:
    return len(_CJK.findall(text))


def latin_words(text: str) -> list[str]:
    return _LATIN_WORD.findall(text)
