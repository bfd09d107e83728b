"""SOP stages of a negotiation and a keyword classifier that reads the stage off a message.

The classifier is what the hotel simulator, the rules and the evaluation use to tell which
stage an agent message is in; it is deliberately simple and bilingual.
"""

from __future__ import annotations

import re
from enum import StrEnum


class SopStage(StrEnum):
    OPENING = "opening"  # identity, purpose
    EVIDENCE = "evidence"  # market / competitor facts
    ASK = "ask"  # a concrete price request per room type
    OBJECTION = "objection"  # empathy, persuasion, calibrated concessions
    CONFIRMATION = "confirmation"  # room type, dates, price, once
    CLOSE = "close"  # next steps
    UNKNOWN = "unknown"  # nothing recognisable


SOP_ORDER: tuple[SopStage, ...] = (
    SopStage.OPENING,
    SopStage.EVIDENCE,
    SopStage.ASK,
    SopStage.OBJECTION,
    SopStage.CONFIRMATION,
    SopStage.CLOSE,
)

# Checked in this order; the first stage whose pattern matches wins. Confirmation and
# close are checked before ask because a confirmation restates the price; opening before
# evidence because an introduction may mention market data.
_PATTERNS: tuple[tuple[SopStage, re.Pattern[str]], ...] = (
    (SopStage.CONFIRMATION, re.compile(r"\bto confirm\b|\bconfirm(ing)?\b.*\bat\b|确认一下|跟您确认|再确认", re.I)),
    (SopStage.CLOSE, re.compile(r"\bthank you for your time\b|\bnext steps?\b|\bgoodbye\b|\bhave a (great|nice) day\b|后续|感谢您的时间|再见", re.I)),
    (SopStage.OBJECTION, re.compile(r"\bI understand\b|\bI hear you\b|\bI see your point\b|\bmeet (us|me) at\b|理解您|我明白|能否折中|各退一步", re.I)),
    (SopStage.ASK, re.compile(r"\b(could|can|would) you\b.*(¥|\d)|\badjust\b.*(¥|\d)|\bprice (of|to)\b.*(¥|\d)|调整到|调到|能否.*¥", re.I)),
    (SopStage.OPENING, re.compile(r"\bthis is\b.*\bfrom\b|\bI'?m\b.*\bfrom\b|\bmy name is\b|\bI am\b.*\bmanager\b|我是.*的|您好，我是", re.I)),
    (SopStage.EVIDENCE, re.compile(r"\bcompetitors?\b|\bsimilar hotels\b|\bnearby\b|\bmarket\b|竞品|周边|同类酒店|市场", re.I)),
)


def classify_stage(text: str) -> SopStage:
    """The SOP stage an agent message carries (UNKNOWN when none is recognisable)."""
    for stage, pattern in _PATTERNS:
        if pattern.search(text):
            return stage
    return SopStage.UNKNOWN


def stage_index(stage: SopStage) -> int:
    """Position in the SOP; UNKNOWN sorts before everything."""
    return SOP_ORDER.index(stage) if stage in SOP_ORDER else -1
