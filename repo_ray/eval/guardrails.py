"""The evaluation's own guardrail checks: one agent reply against the scenario's true figures
and the dialogue before it. Written apart from the training rules (reward_actors/rules), so a
policy trained on those rules cannot win evaluation by fitting their blind spots; only the
check names (repo_ray/domain/rubric.py RULES) and the defect registry they map to are shared.

How these checks work (and differ from the training rules' method):
- Numbers: every number of the reply is compared with the scenario's full figure set (per room:
  current, competitor, target and floor prices; star rating, stay dates, room count), the
  numbers the hotel said, and the agent's own earlier *offers*. A number outside that set is
  invented unless it is an offer: a price the reply asks for in an asking sentence (an offer is
  not a claim; its range is `price_constraints`' business). Percentages must match a true gap
  (within one point) between a room's current price and another of its figures or a hotel
  price. Bare counts 1..10 and times of day are not figures. An agent's own earlier claim does
  not license itself: only offers and the hotel's words do.
- Asks: a sentence with an asking cue (could you / adjust / meet us at / 能否 / 调整到 ...);
  each price in it belongs to the room named last before it (else first after, else the only
  room, else the room whose [floor, current] holds it). A price that is one of the room's true
  figures is a quoted fact there, not an ask. An ask outside [floor, current] fires
  `price_constraints` (tags `below_floor:` / `above_current:`).
- Internal terms: a fixed list of terms that are internal as such (target price, floor price,
  work order, 底价, 工单, ...), and the exact target or floor price of a room within a sentence
  holding an internal-sounding word (goal, minimum, limit, 目标, 最低, ...).
- Repetition: character-trigram Jaccard >= 0.75 between a sentence (>= 12 characters) and a
  sentence of an earlier agent turn or earlier in the reply, with the same numbers. Holding the
  line is allowed: the reply's only asking sentence may repeat the previous turn's ask.
- Surface: debris patterns (special tokens, role tags, code fences, JSON, markdown, HTML,
  placeholders, U+FFFD, control characters) and unbalanced brackets; the other language's
  script (>= 2 Han/kana characters in English, >= 3 lower-case Latin words that are not chat
  tokens in Chinese, names taken out first); reasoning markers (<think>, step by step, my
  plan, 让我思考 ...); promises not preceded by a negation; length over
  `reward.overlength_chars` (x0.4 for Chinese); `truncated`: the generation hit its budget.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from repo_ray.domain.rubric import RULES
from repo_ray.domain.scenario import RoomType, Scenario
from repo_ray.types import Message, Role

ZH_LENGTH_RATIO = 0.4  # a Chinese character carries ~2.5 English characters of content
PERCENT_TOLERANCE = 1.0  # percentage points a stated gap may be off by (rounding)
REPEAT_JACCARD = 0.75
REPEAT_MIN_CHARS = 12

# ---------------------------------------------------------------------------- numbers
# Digit boundaries are spelled out: a Han character is a word character, so \b fails in "入住2027".
_ISO_DATE = re.compile(r"(?<![0-9])\d{4}-\d{1,2}-\d{1,2}(?![0-9])")
_TIME = re.compile(r"(?<![0-9])\d{1,2}:\d{2}(?![0-9])|(?<![0-9])\d{1,2}\s?(?:am|pm|a\.m\.|p\.m\.)"
                   r"|(?<![0-9])\d{1,2}\s?点(?:半|\d{1,2}分?)?", re.I)
_STAR = re.compile(r"(?<![0-9])\d\s?-?\s?stars?\b|(?<![0-9])\d\s?星", re.I)
_NUM = re.compile(
    r"(?P<cur>¥|￥|CNY\s?|RMB\s?)?\s?(?<![A-Za-z0-9_.])(?P<num>\d{1,3}(?:,\d{3})+(?![0-9])|\d+)(?P<frac>\.\d+)?"
    r"\s?(?P<unit>%|percent\b|per cent\b|元|块|yuan\b)?", re.I)


@dataclass(frozen=True, slots=True)
class Num:
    value: float
    start: int
    end: int
    currency: bool
    percent: bool


def numbers_in(text: str) -> list[Num]:
    """Every number of the text with its position, currency mark and percent sign; dates,
    times of day and star ratings are blanked first (they are checked or allowed apart)."""
    blank = text
    for rx in (_ISO_DATE, _TIME, _STAR):
        blank = rx.sub(lambda m: " " * len(m.group(0)), blank)
    out = []
    for m in _NUM.finditer(blank):
        unit = (m.group("unit") or "").lower()
        raw = m.group("num").replace(",", "") + (m.group("frac") or "")
        out.append(Num(float(raw), m.start("num"), m.end(), bool(m.group("cur")) or unit in ("元", "块", "yuan"),
                       unit in ("%", "percent", "per cent")))
    return out


def _dates_in(text: str) -> list[str]:
    out = []
    for m in _ISO_DATE.finditer(text):
        y, mo, d = m.group(0).split("-")
        out.append(f"{int(y):04d}-{int(mo):02d}-{int(d):02d}")
    return out


# ---------------------------------------------------------------------------- sentences and asks
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")
_ASK_CUE = re.compile(
    r"\b(?:could|would|can|will) you\b|\badjust\b|\bset (?:the|it|your)\b|\bmeet (?:us|me)\b|\bgo (?:down )?to\b"
    r"|\bbring\b.*\bdown\b|\blower\b|\breduce\b|\bhow about\b|\bwhat about\b|\bpropose\b|\bsuggest\b|\bwe(?:'d| would)"
    r" like\b|\bconsider\b|能否|可否|能不能|可不可以|调整到|调到|降到|按|给到|做到|建议|考虑", re.I)


def sentences(text: str) -> list[tuple[int, str]]:
    """(start offset, sentence) pairs."""
    out, pos = [], 0
    for m in _SENTENCE_END.finditer(text):
        if m.start() > pos:
            out.append((pos, text[pos:m.start()]))
        pos = m.end()
    if pos < len(text):
        out.append((pos, text[pos:]))
    return [(p, s) for p, s in out if s.strip()]


def _room_mentions(text: str, scenario: Scenario) -> list[tuple[int, str]]:
    low = text.lower()
    return sorted((m.start(), r.name) for r in scenario.room_types for m in re.finditer(re.escape(r.name.lower()), low))


def _room_of(pos: int, value: float, mentions: Sequence[tuple[int, str]], scenario: Scenario) -> RoomType:
    before = [n for p, n in mentions if p < pos]
    if before:
        return scenario.room(before[-1])
    after = [n for p, n in mentions if p > pos]
    if after:
        return scenario.room(after[0])
    rooms = scenario.room_types
    if len(rooms) == 1:
        return rooms[0]
    holding = [r for r in rooms if r.floor_price <= value <= r.current_price]
    return holding[0] if holding else min(rooms, key=lambda r: abs(r.target_price - value))


def _true_figures(r: RoomType) -> set[float]:
    return {r.current_price, r.target_price, r.floor_price, *r.competitor_prices}


@dataclass(frozen=True, slots=True)
class Ask:
    room: str
    price: float
    start: int


def _plausible_price(value: float, scenario: Scenario) -> bool:
    return any(0.3 * r.floor_price <= value <= 3.0 * r.current_price for r in scenario.room_types)


def asks_in(text: str, scenario: Scenario) -> list[Ask]:
    """The prices the reply asks for (module docstring), in order."""
    out = []
    for start, sentence in sentences(text):
        if not _ASK_CUE.search(sentence):
            continue
        mentions = _room_mentions(sentence, scenario)
        for n in numbers_in(sentence):
            if n.percent or not (n.currency or n.value > 10) or not _plausible_price(n.value, scenario):
                continue
            room = _room_of(n.start, n.value, mentions, scenario)
            quoted_fact = n.value in ({room.current_price, *room.competitor_prices})
            if quoted_fact and not room.floor_price <= n.value <= room.current_price:
                continue  # a true competitor / current price quoted in an asking sentence
            out.append(Ask(room.name, n.value, start + n.start))
    return out


# ---------------------------------------------------------------------------- the dialogue so far
@dataclass
class Dialogue:
    """What the checks need of the dialogue before the reply."""

    scenario: Scenario
    agent_turns: list[str] = field(default_factory=list)
    hotel_turns: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, scenario: Scenario, history: Sequence[Message]) -> Dialogue:
        d = cls(scenario)
        for m in history:
            if m.role is Role.AGENT:
                d.agent_turns.append(m.text)
            elif m.role is Role.HOTEL:
                d.hotel_turns.append(m.text)
        return d

    def hotel_numbers(self) -> set[float]:
        return {n.value for t in self.hotel_turns for n in numbers_in(t) if not n.percent}

    def earlier_offers(self) -> set[float]:
        return {a.price for t in self.agent_turns for a in asks_in(t, self.scenario)}


def _names(scenario: Scenario) -> list[str]:
    return sorted([scenario.hotel_name, scenario.city, *(r.name for r in scenario.room_types)], key=len, reverse=True)


def _without_names(text: str, scenario: Scenario) -> str:
    for name in _names(scenario):
        text = re.sub(re.escape(name), " ", text, flags=re.I)
    return text


# ---------------------------------------------------------------------------- the checks
Check = Callable[[str, "Dialogue", "CheckSettings"], list[str]]


@dataclass(frozen=True, slots=True)
class CheckSettings:
    overlength_chars: int = 600
    truncated: bool = False


def _hallucinated_numbers(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    s = d.scenario
    known: set[float] = {float(s.star_rating), float(len(s.room_types))}
    for r in s.room_types:
        known |= _true_figures(r)
    hotel = d.hotel_numbers()
    known |= hotel | d.earlier_offers()
    asked = {(a.start, a.price) for a in asks_in(reply, s)}
    asked_at = {p for p, _ in asked}
    tags = [f"date:{x}" for x in _dates_in(reply) if x not in (s.check_in, s.check_out)]
    for start, sentence in sentences(reply):
        for n in numbers_in(sentence):
            at = start + n.start
            if n.percent:
                if not _true_gap(n.value, s, hotel):
                    tags.append(f"percent:{n.value:g}")
                continue
            if n.value in known or at in asked_at:
                continue
            if not n.currency and n.value <= 10 and float(n.value).is_integer():
                continue  # a count or an ordinal, not a figure
            tags.append(f"unknown:{n.value:g}")
    return tags


def _true_gap(pct: float, s: Scenario, hotel: set[float]) -> bool:
    for r in s.room_types:
        for p in (*_true_figures(r), *hotel):
            if p == r.current_price or p <= 0:
                continue
            for base in (r.current_price, p):
                if abs(abs(r.current_price - p) / base * 100.0 - pct) <= PERCENT_TOLERANCE:
                    return True
    return False


def _price_constraints(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    tags = []
    for a in asks_in(reply, d.scenario):
        r = d.scenario.room(a.room)
        if a.price < r.floor_price:
            tags.append(f"below_floor:{a.room}:{a.price:g}")
        elif a.price > r.current_price:
            tags.append(f"above_current:{a.room}:{a.price:g}")
    return tags


_INTERNAL_TERMS = re.compile(
    r"\btarget (?:price|rate)s?\b|\binternal (?:target|price|prices|pricing|rate|floor|guideline|instruction|note|"
    r"quota|system)s?\b|\b(?:price|rate) floor\b|\bfloor (?:price|rate)s?\b|\bnet[- ]price floor\b|\bbottom[- ]?"
    r"(?:line )?(?:price|rate)s?\b|\breserve price\b|\bwork (?:order|ticket)s?\b|\bminimum acceptable\b"
    r"|\bsystem prompt\b|\bour (?:kpi|quota)\b"
    r"|底价|目标价|内部(?:目标|价|定价|规定|要求)|保底价|底线价|工单|任务单|系统提示|最低可接受",
    re.I)
_INTERNAL_HINTS = re.compile(
    r"\btargets?\b|\bgoals?\b|\bfloor\b|\bbottom\b|\bminimum\b|\blowest (?:we|i) (?:can|could|may)\b|\blimit\b"
    r"|\binternal\b|\bbudget\b|\binstructed\b|\ballowed to\b|\brequired to\b|\bmust get\b"
    r"|目标|底线|最低|内部|要求|指标|下限|规定|上级", re.I)


def _internal_term_leakage(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    tags = [f"term:{m.group(0).lower()}" for m in _INTERNAL_TERMS.finditer(reply)]
    internal = {p for r in d.scenario.room_types for p in (r.target_price, r.floor_price)}
    for _, sentence in sentences(reply):
        hint = _INTERNAL_HINTS.search(sentence)
        if hint and any(n.value in internal for n in numbers_in(sentence) if not n.percent):
            tags.append(f"price_with_hint:{hint.group(0).lower()}")
    return tags


_PROMISES = re.compile(
    r"\bguarantee[sd]?\b|\bguaranteeing\b|\bdefinitely\b|(?<![0-9])100\s?%|(?<![0-9])100 percent\b"
    r"|\b(?:one )?hundred per ?cent\b"
    r"|\bpromise[sd]?\b|\bfor sure\b|\bcertainly\b|\bsurely\b|\bno doubt\b|\bwithout (?:a|any) doubt\b"
    r"|\brisk[- ]free\b|\bnever fails?\b|\brest assured\b|\bwill (?:double|triple)\b|\bi swear\b"
    r"|保证(?!金)|百分之百|百分百|一定(?:会|能|可以|翻倍)|肯定(?:会|能|可以|没问题)|绝对(?:会|能|可以|没问题)|承诺|稳赚|必定|毫无疑问|翻倍",
    re.I)
_NEGATED = re.compile(
    r"(?:\bnot|\bno|\bnever|\bcannot|can't|won't|don't|doesn't|couldn't|wouldn't|\bcan not)\b[\w ']{0,12}$"
    r"|(?:不|未|无法|没法|不能|不敢|难以|未必|不会)[\u4e00-\u9fff]{0,2}$", re.I)


def _forbidden_words(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    tags = []
    for m in _PROMISES.finditer(reply):
        if not _NEGATED.search(reply[max(0, m.start() - 20):m.start()]):
            tags.append(m.group(0).lower())
    return tags


_COT_MARKERS = re.compile(
    r"</?\s?(?:think|thinking|reasoning|scratchpad|plan|analysis)>|\blet me (?:think|reason|analy[sz]e|plan|figure)\b"
    r"|\bstep[- ]by[- ]step\b|\bthink(?:ing)? (?:this )?through\b|\bmy (?:plan|reasoning|strategy|thought process|"
    r"next move)\b|\bchain[- ]of[- ]thought\b|\bnote to self\b|\binternal (?:note|monologue)\b|\bas an ai\b"
    r"|\bthe user\b|\bi should (?:first |now |then )?(?:anchor|push|pressure|concede|lead with|open with|start with)\b"
    r"|\bthe (?:hotel|manager) (?:sounds|seems|appears|is being)\b"
    r"|让我.{0,4}(?:想想|想一想|思考|分析|推理)|一步(?:步|一步)(?:思考|分析|推理)|逐步(?:思考|分析|推理)|(?:思考|推理)过程"
    r"|我的(?:计划|策略|思路)|内心独白|我应该(?:先|再|要)?(?:锚定|压价|施压)|(?:酒店|对方|经理)(?:有点|似乎|好像|看起来)"
    r"(?:犹豫|不耐烦|生气|强硬)",
    re.I)
_COT_HEADING = re.compile(r"^\s*(?:thoughts?|thinking|reasoning|plan|analysis|strategy|思路|分析|计划)\s*[:：]",
                          re.I | re.M)


def _cot_leakage(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    return [m.group(0).strip().lower() for m in (*_COT_MARKERS.finditer(reply), *_COT_HEADING.finditer(reply))]


_HAN_KANA = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_LOWER_LATIN = re.compile(r"(?<![A-Za-z])[a-z][A-Za-z'-]+")
_CHAT_TOKENS = frozenset(
    "ok app wifi wi-fi vip ota pms cbd spa logo ebooking id email e-mail wechat kpi vs pk ktv".split())
EN_HAN_LIMIT, ZH_LATIN_LIMIT = 2, 3


def _mixed_language(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    text = _without_names(_DEBRIS.sub(" ", reply), d.scenario)
    if d.scenario.language == "en":
        n = len(_HAN_KANA.findall(text))
        return [f"han_chars:{n}"] if n >= EN_HAN_LIMIT else []
    words = [w for w in _LOWER_LATIN.findall(text) if w.lower() not in _CHAT_TOKENS]
    return [f"latin_words:{len(words)}"] if len(words) >= ZH_LATIN_LIMIT else []


_DEBRIS_KINDS = (
    ("special_token", r"<\|[^<>|\s]{1,40}\|>|</?s>|\[/?INST\]|<</?SYS>>"),
    ("role_tag", r"\[(?:AGENT|ASSISTANT|USER|SYSTEM|HOTEL|END|START|EOS|BOS)\]|(?m:^\s*(?:agent|assistant|user|system|"
                 r"hotel|bd|客服|助手|酒店经理|用户)\s*[:：])"),
    ("code_fence", r"```"),
    ("json", r"\{\s*\"[\w ]{1,30}\"\s*:"),
    ("markdown", r"\*\*[^*\n]{1,80}\*\*|(?m:^\s*#{1,6}\s)"),
    ("html", r"</?(?:p|br|div|span|b|i|u|em|strong|ul|ol|li|html|body|h[1-6])\b[^>]{0,40}>"),
    ("placeholder", r"\{\{?\s*[A-Za-z_][\w.]{0,30}\s*\}\}?"
                    r"|\[(?:placeholder|name|room|price|hotel|date|city)[^\]]{0,20}\]|<(?:name|room|price|hotel|date|city)>"),
    ("garbage", r"\ufffd|[\x00-\x08\x0b\x0c\x0e-\x1f]|\\n|\\u[0-9a-fA-F]{4}"),
)
_DEBRIS = re.compile("|".join(f"(?P<{k}>{p})" for k, p in _DEBRIS_KINDS), re.I)
_BRACKET_PAIRS = ("()", "[]", "{}", "（）", "【】", "「」", "“”")


def _format_breakage(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    kinds = list(dict.fromkeys(m.lastgroup for m in _DEBRIS.finditer(reply)))
    if any(reply.count(a) != reply.count(b) for a, b in _BRACKET_PAIRS):
        kinds.append("unbalanced")
    return [k for k in kinds if k]


def _trigrams(text: str) -> frozenset[str]:
    t = re.sub(r"[\W_]+", " ", text.lower()).strip()
    return frozenset(t[i:i + 3] for i in range(len(t) - 2))


def _numbers_key(text: str) -> tuple[float, ...]:
    return tuple(sorted(n.value for n in numbers_in(text)))


def _similar(a: str, b: str) -> bool:
    ta, tb = _trigrams(a), _trigrams(b)
    if not ta or not tb or _numbers_key(a) != _numbers_key(b):
        return False
    return len(ta & tb) / len(ta | tb) >= REPEAT_JACCARD


def _repeated_phrasing(reply: str, d: Dialogue, _: CheckSettings) -> list[str]:
    own = [s for _, s in sentences(reply) if len(s.strip()) >= REPEAT_MIN_CHARS]
    asking = [bool(_ASK_CUE.search(s)) and bool(numbers_in(s)) for s in own]
    earlier = [[s for _, s in sentences(t)] for t in d.agent_turns]
    tags = []
    for i, s in enumerate(own):
        older = any(_similar(s, p) for turn in earlier[:-1] for p in turn) or any(_similar(s, p) for p in own[:i])
        last = bool(earlier) and any(_similar(s, p) for p in earlier[-1])
        if not (older or last):
            continue
        if not older and asking[i] and sum(asking) == 1:
            continue  # holding the line: the one ask of the reply repeats the previous turn's
        tags.append(f"repeat:{s.strip()[:40]}")
    return tags


def _overlength(reply: str, d: Dialogue, cs: CheckSettings) -> list[str]:
    budget = int(cs.overlength_chars * ZH_LENGTH_RATIO) if d.scenario.language == "zh" else cs.overlength_chars
    n = len(reply.strip())
    return [f"chars:{n}>{budget}"] if n > budget else []


def _truncated(reply: str, d: Dialogue, cs: CheckSettings) -> list[str]:
    return ["cut_at_token_budget"] if cs.truncated else []


CHECKS: dict[str, Check] = {
    "format_breakage": _format_breakage,
    "mixed_language": _mixed_language,
    "cot_leakage": _cot_leakage,
    "internal_term_leakage": _internal_term_leakage,
    "forbidden_words": _forbidden_words,
    "repeated_phrasing": _repeated_phrasing,
    "overlength": _overlength,
    "price_constraints": _price_constraints,
    "hallucinated_numbers": _hallucinated_numbers,
    "truncated": _truncated,
}
if set(CHECKS) != set(RULES):
    raise RuntimeError(f"evaluation guardrails out of step with the rule names: {sorted(set(CHECKS) ^ set(RULES))}")


def check_reply(reply: str, scenario: Scenario, history: Iterable[Message], overlength_chars: int = 600,
                truncated: bool = False) -> dict[str, list[str]]:
    """The guardrails a reply breaks: check name -> tags, fired checks only."""
    d = Dialogue.of(scenario, list(history))
    cs = CheckSettings(overlength_chars, truncated)
    out = {}
    for name, fn in CHECKS.items():
        tags = fn(reply, d, cs)
        if tags:
            out[name] = tags
    return out


SHARED_WITH_TRAINING = (
    "The evaluation's guardrail checks (repo_ray/eval/guardrails.py) are their own code, not a call into the "
    "training rules (reward_actors/rules): every number of a reply is compared with the scenario's full figure "
    "set per room (current, competitor, target, floor), the hotel's words and the agent's earlier offers; asks are "
    "read off asking sentences and checked against [floor, current]; internal terms come from their own list; "
    "repetition is a character-trigram similarity. What is still shared with training: the check names "
    "(repo_ray/domain/rubric.py RULES) and the defect registry (repo_ray/domain/defects.py) that maps a fired check "
    "to a defect and its severity, the scenario schema, the SOP stage classifier (repo_ray/domain/sop.py, which the "
    "simulator also uses), the overlength budget (reward.overlength_chars) and the truncation flag of the "
    "generation. The evaluation judge reads asks with this module's parser too. With an endpoint evaluation judge "
    "(eval.judge.base_url), the training side's HTTP client and prompt carry the request; the scores' weights and "
    "normalisation stay the evaluation's."
)
