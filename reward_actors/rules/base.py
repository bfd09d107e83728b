"""The RF rule contract: `RuleContext` (what a rule may know besides the reply), `RuleResult`,
the name -> function registry, and the text helpers every rule shares.

Score convention (one for all rules): a rule returns -1.0 per violation it finds, capped
at `MAX_VIOLATIONS` (so a raw score lies in [-2, 0]); 0 means clean. No built-in rule gives
a bonus; a plug-in rule (reward.extra_rules, repo_ray/plugins.py) may, up to the `bonus`
attribute it documents on its function. E_func = sum(weight * raw score), with the weights
in E units (n = 100), so one violation of a rule costs exactly its weight.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from repo_ray.domain.scenario import LANGUAGES, Language, RoomType, Scenario
from repo_ray.types import Message, Role

MAX_VIOLATIONS = 2  # a rule's raw score never goes below -MAX_VIOLATIONS


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule's verdict on one reply: score <= 0 (0 = clean) and short tags saying why."""

    score: float
    tags: tuple[str, ...] = ()

    @property
    def fired(self) -> bool:
        return self.score < 0


CLEAN = RuleResult(0.0)


def violations(tags: Sequence[str]) -> RuleResult:
    """The result for one tag per violation: -1 each, capped at MAX_VIOLATIONS."""
    if not tags:
        return CLEAN
    return RuleResult(-float(min(len(tags), MAX_VIOLATIONS)), tuple(tags))


RuleFunc = Callable[[str, "RuleContext"], RuleResult]
RULE_FUNCS: dict[str, RuleFunc] = {}


def register_rule(name: str) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule function under a name of `repo_ray.domain.rubric.RULES`."""

    def deco(fn: RuleFunc) -> RuleFunc:
        if name in RULE_FUNCS:
            raise ValueError(f"rule {name!r} registered twice")
        RULE_FUNCS[name] = fn
        return fn

    return deco


_CHECKED: dict[str, tuple[Callable[..., Any], RuleFunc]] = {}  # plug-in name -> (its function, checked wrapper)


def _checked_plugin(name: str, fn: Callable[..., Any]) -> RuleFunc:
    """A plug-in rule held to the contract: a RuleResult with a finite score in
    [-MAX_VIOLATIONS, bonus]. Anything else is a bug in the plug-in and raises naming it (the
    rule checker's failure then masks the sample, as for any rule failure)."""
    bonus = float(getattr(fn, "bonus", 0.0))

    def run(response: str, ctx: RuleContext) -> RuleResult:
        res = fn(response, ctx)
        if not isinstance(res, RuleResult):
            raise TypeError(f"plug-in rule {name!r} returned a {type(res).__name__}, not a RuleResult")
        if not (math.isfinite(res.score) and -MAX_VIOLATIONS <= res.score <= bonus):
            raise ValueError(f"plug-in rule {name!r} scored {res.score!r}, outside [-{MAX_VIOLATIONS}, {bonus:g}]")
        return res

    return run


def rule_funcs() -> dict[str, RuleFunc]:
    """Every rule this process can run: the built-in registry (in RULES order), then the
    plug-in rules the configs loaded in this process registered (repo_ray.plugins)."""
    from repo_ray.plugins import PLUGIN_RULES

    if not PLUGIN_RULES:
        return RULE_FUNCS
    out = dict(RULE_FUNCS)
    for name, fn in PLUGIN_RULES.items():
        held = _CHECKED.get(name)
        if held is None or held[0] is not fn:
            held = _CHECKED[name] = (fn, _checked_plugin(name, fn))
        out[name] = held[1]
    return out


# ---------------------------------------------------------------------------- shared text helpers
# Speed (bench/rules.py): rule patterns run on the lower-cased reply without re.I, and each
# alternative starts with a literal (no leading \b), so the regex engine skips ahead on a
# first-character set instead of trying every branch at every position (~10x faster);
# `word_starts` then applies the left word boundary to the few matches there are. English
# term lists are also gated by `Terms.triggers`: unless the reply holds one of those words,
# the English pattern is not run at all (most replies hold none).
_reply_cache: tuple[str | None, str, frozenset[str] | None] = (None, "", None)
_LATIN_WORD = re.compile(r"[a-z]+|\d+")


def lowered(text: str) -> str:
    """text.lower(), computed once per reply for all the rules that ask (one-entry cache;
    the tuple swap is atomic, so threads cannot see a mismatched pair)."""
    global _reply_cache
    cached = _reply_cache
    if cached[0] is text:
        return cached[1]
    low = text.lower()
    _reply_cache = (text, low, None)
    return low


def reply_words(text: str) -> frozenset[str]:
    """The Latin words and digit runs of the lower-cased reply (cached like `lowered`)."""
    global _reply_cache
    low = lowered(text)
    cached = _reply_cache
    if cached[0] is text and cached[2] is not None:
        return cached[2]
    words = frozenset(_LATIN_WORD.findall(low))
    _reply_cache = (text, low, words)
    return words


def word_starts(pattern: re.Pattern[str], low: str) -> list[re.Match[str]]:
    """Matches of `pattern` in `low` that start a word (an ASCII letter or digit right before
    a Latin match means it is inside another word: "compromise" holds no "promise")."""
    out = []
    for m in pattern.finditer(low):
        i = m.start()
        if i and m.group(0)[0].isascii() and m.group(0)[0].isalnum():
            prev = low[i - 1]
            if prev.isascii() and (prev.isalnum() or prev == "_"):
                continue
        out.append(m)
    return out


@dataclass(frozen=True)
class Terms:
    """A bilingual term list: an English pattern run only when the reply holds one of its
    trigger words (every English alternative must contain one), and a Chinese pattern run
    only on replies with non-ASCII text. Both are lower-case, literal-first alternations."""

    en: re.Pattern[str]
    triggers: frozenset[str]
    zh: re.Pattern[str] | None = None

    def find(self, text: str) -> list[re.Match[str]]:
        """Word-initial matches in the lower-cased `text` (a reply, whose words are cached)."""
        low = lowered(text)
        out = word_starts(self.en, low) if not self.triggers.isdisjoint(reply_words(text)) else []
        if self.zh is not None and not low.isascii():
            out.extend(self.zh.finditer(low))
        return out

    def find_in(self, low: str) -> list[re.Match[str]]:
        """Matches in any lower-cased text (no trigger gate: for sentences of a reply)."""
        out = word_starts(self.en, low)
        if self.zh is not None and not low.isascii():
            out.extend(self.zh.finditer(low))
        return out


# Sentences end at . ! ? followed by space or end (so ¥9.50 stays whole), at a CJK full stop,
# question or exclamation mark, or at a line break; the end mark is dropped.
_SENTENCE_END = re.compile(r"[.!?](?:\s+|$)|[。！？]\s*|\n+")
_TOKEN_RUN = re.compile(r"[0-9a-z]+|[\u4e00-\u9fff]+")


def split_sentences(text: str) -> list[str]:
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


@dataclass(frozen=True, slots=True)
class SentenceKey:
    """A sentence in the form repetition is judged on."""

    norm: str  # its words, numbers and CJK runs joined by single spaces (case and punctuation gone)
    tokens: frozenset[str]  # words, numbers and CJK character bigrams, for near-duplicate tests
    numbers: frozenset[str]  # the tokens that are numbers
    size: int  # how much it says: Latin words + CJK characters / 2 (a Chinese word is ~2 characters)


def sentence_key(lowered_sentence: str) -> SentenceKey:
    runs = _TOKEN_RUN.findall(lowered_sentence)
    if lowered_sentence.isascii():
        return SentenceKey(" ".join(runs), frozenset(runs), frozenset(r for r in runs if r[0] <= "9"), len(runs))
    out: set[str] = set()
    latin = cjk = 0
    for run in runs:
        if run[0] < "\u4e00":
            out.add(run)
            latin += 1
        else:
            cjk += len(run)
            if len(run) == 1:
                out.add(run)
            else:
                out.update(map(str.__add__, run, run[1:]))
    return SentenceKey(" ".join(runs), frozenset(out), frozenset(r for r in runs if r[0] <= "9"), latin + cjk // 2)


# Numbers as the rules read them. Unlike repo_ray.domain.text.extract_numbers, a number right
# after a CJK character counts ("有30%" holds 30): only Latin letters, digits and a decimal
# point before it make it part of a code or a bigger number.
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:,\d{3}(?!\d))*(?:\.\d+)?")


def parse_number(raw: str) -> float:
    return float(raw.replace(",", ""))


def numbers_in(text: str) -> list[float]:
    return [parse_number(m.group(0)) for m in NUMBER.finditer(text)]


def _name_pattern(names: Iterable[str], flags: int = re.I) -> re.Pattern[str] | None:
    return _compiled_names(tuple(sorted({n for n in names if n.strip()}, key=lambda n: (-len(n), n))), flags)


@functools.lru_cache(maxsize=4096)  # every turn of a scenario has the same names; compiling is ~100 us
def _compiled_names(names: tuple[str, ...], flags: int) -> re.Pattern[str] | None:
    # longest first, so "Deluxe King Suite" wins over "Deluxe King"
    return re.compile("|".join(re.escape(n) for n in names), flags) if names else None


# ---------------------------------------------------------------------------- the context
@dataclass(frozen=True, slots=True)
class PriorSentence:
    """A sentence the agent said before this reply."""

    key: SentenceKey
    older: bool  # said in an agent turn before the last one (or, in a reply, earlier in it)


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule may know besides the reply; independent of the reply, so one context
    serves every candidate reply of a turn (and its derived caches are computed once).

    history: the prior agent and hotel turns (system messages are dropped).
    allowed_numbers: numbers the agent may state besides the room prices (added
        automatically) and what the hotel said: for a scenario its star rating and date
        parts, plus any extra allowed list. The agent's own earlier turns are no evidence
        (DESIGN.md §7: repeating one's own invention keeps it an invention).
    star_rating, stay_nights: the scenario's, when known (None: check such claims against
        the allowed list instead).
    extra_allowed: the allowed list beyond the scenario facts, which claims of any kind
        may use (None: allowed_numbers less the room prices).
    names: proper names (hotel, city) that language and number checks skip; room names
        are skipped too.
    truncated: the reply was cut at the token budget (`Trajectory.truncated`). The one fact
        about the reply a context carries, as its text cannot show it; set it per reply
        (default False, so a context shared by the replies of a turn stays reply-free).
    """

    history: tuple[Message, ...] = ()
    language: Language = "en"
    room_types: tuple[RoomType, ...] = ()
    allowed_numbers: frozenset[float] = frozenset()
    overlength_chars: int = 600
    names: tuple[str, ...] = ()
    truncated: bool = False
    star_rating: int | None = None
    stay_nights: int | None = None
    extra_allowed: frozenset[float] | None = None
    # derived in __post_init__
    known_numbers: frozenset[float] = field(init=False, repr=False, compare=False)  # allowed, room prices, hotel's
    hotel_numbers: frozenset[float] = field(init=False, repr=False, compare=False)
    agent_texts: tuple[str, ...] = field(init=False, repr=False, compare=False)
    claim_facts: Any = field(init=False, repr=False, compare=False)  # filled on first use by rules/numbers.py
    name_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    digit_name_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    room_pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False)  # lower-cased names
    room_by_lower: dict[str, RoomType] = field(init=False, repr=False, compare=False)
    prior_agent_sentences: tuple[PriorSentence, ...] = field(init=False, repr=False, compare=False)
    prior_by_norm: dict[str, PriorSentence] = field(init=False, repr=False, compare=False)
    prior_by_numbers: dict[frozenset[str], tuple[PriorSentence, ...]] = field(init=False, repr=False, compare=False)
    internal_prices: frozenset[float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        history = tuple(m if isinstance(m, Message) else Message.from_dict(m) for m in self.history)
        history = tuple(m for m in history if m.role is not Role.SYSTEM)
        set_ = object.__setattr__
        set_(self, "history", history)
        set_(self, "room_types", tuple(self.room_types))
        set_(self, "allowed_numbers", frozenset(float(x) for x in self.allowed_numbers))
        set_(self, "names", tuple(self.names))
        if self.language not in LANGUAGES:
            raise ValueError(f"language {self.language!r} is not one of {LANGUAGES}")
        if self.overlength_chars < 1:
            raise ValueError(f"overlength_chars {self.overlength_chars} < 1")

        if self.extra_allowed is not None:
            set_(self, "extra_allowed", frozenset(float(x) for x in self.extra_allowed))
        known = set(self.allowed_numbers)
        for r in self.room_types:
            known |= {r.current_price, r.target_price, r.floor_price, *r.competitor_prices}
        hotel = frozenset(x for m in history if m.role is Role.HOTEL for x in numbers_in(m.text))
        set_(self, "hotel_numbers", hotel)
        set_(self, "known_numbers", frozenset(known | hotel))
        set_(self, "agent_texts", tuple(m.text for m in history if m.role is Role.AGENT))
        set_(self, "claim_facts", None)
        set_(self, "internal_prices", frozenset(p for r in self.room_types for p in (r.target_price, r.floor_price)))
        set_(self, "room_pattern", _name_pattern((r.name.lower() for r in self.room_types), 0))
        set_(self, "room_by_lower", {r.name.lower(): r for r in self.room_types})
        all_names = [*self.names, *(r.name for r in self.room_types)]
        set_(self, "name_pattern", _name_pattern(all_names))
        set_(self, "digit_name_pattern", _name_pattern(n for n in all_names if any(c.isdigit() for c in n)))
        agent_turns = [m.text for m in history if m.role is Role.AGENT]
        prior: dict[str, PriorSentence] = {}
        for i, text in enumerate(agent_turns):
            older = i < len(agent_turns) - 1
            for s in split_sentences(text.lower()):
                key = sentence_key(s)
                if key.norm:
                    was = prior.get(key.norm)
                    prior[key.norm] = PriorSentence(key, older or (was is not None and was.older))
        set_(self, "prior_agent_sentences", tuple(prior.values()))
        set_(self, "prior_by_norm", prior)
        by_numbers: dict[frozenset[str], list[PriorSentence]] = {}
        for p in prior.values():
            by_numbers.setdefault(p.key.numbers, []).append(p)
        set_(self, "prior_by_numbers", {k: tuple(v) for k, v in by_numbers.items()})

    def strip_names(self, text: str) -> str:
        """The text with hotel, city and room names blanked (they may be in either script)."""
        return self.name_pattern.sub(" ", text) if self.name_pattern is not None else text

    def room(self, name: str) -> RoomType:
        """The room type of a name, in any case."""
        return self.room_by_lower[name.lower()]

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        history: Sequence[Message | Mapping[str, str]],
        extra_allowed: Iterable[float] = (),
        overlength_chars: int = 600,
        truncated: bool = False,
    ) -> RuleContext:
        """The context of one agent turn of a scenario; `history` may include the system prompt."""
        extra = frozenset(float(x) for x in extra_allowed)
        return cls(
            history=tuple(history),  # type: ignore[arg-type]  # normalized in __post_init__
            language=scenario.language,
            room_types=scenario.room_types,
            allowed_numbers=frozenset(scenario.allowed_numbers()) | extra,
            overlength_chars=overlength_chars,
            names=(scenario.hotel_name, scenario.city),
            truncated=truncated,
            star_rating=scenario.star_rating,
            stay_nights=(dt.date.fromisoformat(scenario.check_out) - dt.date.fromisoformat(scenario.check_in)).days,
            extra_allowed=extra,
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any], overlength_chars: int = 600) -> RuleContext:
        """The context of one `repo-ray check-rules` line: history, language, room_types, an
        optional allowed_numbers list and an optional truncated flag (other keys, such as the
        response, are not read here).
        Raises ValueError with a one-line reason naming the field."""
        for key in ("history", "language", "room_types"):
            if key not in record:
                raise ValueError(f"missing field {key!r}")
        language = record["language"]
        if language not in LANGUAGES:
            raise ValueError(f"language: {language!r} is not one of {list(LANGUAGES)}")

        history = record["history"]
        if not isinstance(history, list):
            raise ValueError(f"history: expected a list, got {type(history).__name__}")
        messages = []
        for i, m in enumerate(history):
            if not isinstance(m, Mapping):
                raise ValueError(f"history[{i}]: expected an object with role and text")
            role, text = m.get("role"), m.get("text")
            if role not in (Role.AGENT.value, Role.HOTEL.value):
                raise ValueError(f"history[{i}].role: {role!r} is not 'agent' or 'hotel'")
            if not isinstance(text, str):
                raise ValueError(f"history[{i}].text: expected a string")
            messages.append(Message(Role(role), text))

        rooms_raw = record["room_types"]
        if not isinstance(rooms_raw, list):
            raise ValueError(f"room_types: expected a list, got {type(rooms_raw).__name__}")
        rooms = []
        for i, r in enumerate(rooms_raw):
            if not isinstance(r, Mapping):
                raise ValueError(f"room_types[{i}]: expected an object")
            missing = [k for k in ("name", "current_price", "competitor_prices", "target_price", "floor_price")
                       if k not in r]
            if missing:
                raise ValueError(f"room_types[{i}]: missing field {missing[0]!r}")
            if not isinstance(r["name"], str):
                raise ValueError(f"room_types[{i}].name: expected a string")
            for k in ("current_price", "target_price", "floor_price"):
                _finite(r[k], f"room_types[{i}].{k}")
            if not isinstance(r["competitor_prices"], list):
                raise ValueError(f"room_types[{i}].competitor_prices: expected a list of numbers")
            for j, p in enumerate(r["competitor_prices"]):
                _finite(p, f"room_types[{i}].competitor_prices[{j}]")
            try:
                rooms.append(RoomType.from_row(r))
            except ValueError as err:
                raise ValueError(f"room_types[{i}]: {err}") from None
        if len({r.name for r in rooms}) != len(rooms):
            raise ValueError("room_types: room names repeat")

        allowed = record.get("allowed_numbers", [])
        if allowed is None:
            allowed = []
        if not isinstance(allowed, list):
            raise ValueError(f"allowed_numbers: expected a list of numbers, got {type(allowed).__name__}")
        for j, x in enumerate(allowed):
            _finite(x, f"allowed_numbers[{j}]")
        truncated = record.get("truncated", False)
        if not isinstance(truncated, bool):
            raise ValueError(f"truncated: expected true or false, got {truncated!r}")
        return cls(
            history=tuple(messages),
            language=language,
            room_types=tuple(rooms),
            allowed_numbers=frozenset(float(x) for x in allowed),
            overlength_chars=overlength_chars,
            truncated=truncated,
        )


def _finite(x: Any, where: str) -> None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ValueError(f"{where}: expected a finite number, got {x!r}")
