"""Guardrail rules on wording: internal-term leakage, forbidden / over-promising words, and
stock sentences repeated from the agent's earlier turns. Pure functions of (reply,
RuleContext); score convention in base.py.
"""

from __future__ import annotations

import re

from reward_actors.rules.base import (
    CLEAN,
    NUMBER,
    PriorSentence,
    RuleContext,
    RuleResult,
    SentenceKey,
    Terms,
    lowered,
    parse_number,
    register_rule,
    sentence_key,
    split_sentences,
    violations,
    word_starts,
)
from reward_actors.rules.numbers import ASK_CUE

# ---------------------------------------------------------------------------- internal terms
# Terms that are internal whatever follows them (lower-case literals: see base.py on speed).
_INTERNAL = Terms(
    en=re.compile(
        r"internal target\b|target price|target rate|internal price|internal rate|internal floor|internal guideline"
        r"|internal instruction|internal note|internal quota|internal system|internal pricing|price floor\b"
        r"|rate floor\b|net price floor\b|net-price floor\b|floor price|floor rate|bottom price|bottom rate"
        r"|bottom-line price|bottom line price|bottom-line rate|reserve price\b|work order|work ticket"
        r"|minimum acceptable price\b|minimum acceptable rate\b|system prompt\b|our kpi|our quota"
    ),
    triggers=frozenset("internal target floor bottom reserve work minimum system kpi quota".split()),
    zh=re.compile(r"底价|目标价|内部目标|内部价|内部定价|保底价|底线价|工单|任务单|考核指标|系统提示|最低可接受"),
)
# Softer words that reveal an internal price only when the exact target or floor price is in
# the same sentence ("our goal for the Deluxe King is ¥900", "最低只能到¥850").
_INTERNAL_HINT = Terms(
    en=re.compile(
        r"target\b|targets\b|goal\b|goals\b|floor\b|bottom\b|minimum\b|lowest (?:we|i) (?:can|could|may)\b|limit\b"
        r"|internal\b|budget\b|instructed\b|allowed to\b|required to\b|have to get\b|must get\b"
    ),
    triggers=frozenset((
        "target targets goal goals floor bottom minimum lowest limit internal budget instructed allowed "
        "required get"
    ).split()),
    zh=re.compile(r"目标|底线|最低|内部|要求|指标|任务|下限|公司规定|上级"),
)


@register_rule("internal_term_leakage")
def internal_term_leakage(response: str, ctx: RuleContext) -> RuleResult:
    """Internal terms stated as such (target price, floor price, work order, 底价, 目标价, 工单,
    ...), and an exact target or floor price stated in a sentence with an internal-sounding
    word (goal, minimum, limit, 目标, 最低, 要求, ...)."""
    tags = [f"term:{m.group(0)}" for m in _INTERNAL.find(response)]
    if ctx.internal_prices and _INTERNAL_HINT.find(response):
        for sentence in split_sentences(lowered(response)):
            hints = _INTERNAL_HINT.find_in(sentence)
            if not hints:
                continue
            for m in NUMBER.finditer(sentence):
                if parse_number(m.group(0)) in ctx.internal_prices:
                    tags.append(f"price_with_hint:{hints[0].group(0)}:{m.group(0)}")
                    break
    return violations(tags)


# ---------------------------------------------------------------------------- forbidden words
_PROMISE = Terms(
    en=re.compile(
        r"guarantee\b|guarantees\b|guaranteed\b|guaranteeing\b|definitely\b|100%|100 %|100 percent\b"
        r"|100 per cent\b|one hundred percent\b|a hundred percent\b|hundred per cent\b|promise\b|promises\b"
        r"|promised\b|for sure\b|certainly will\b|will certainly\b|surely\b|without a doubt\b"
        r"|without any doubt\b|no doubt\b|risk-free\b|risk free\b|never fail\b|never fails\b|rest assured\b"
        r"|absolutely (?:will|sure|certain|guarantee)\b|will double\b|will triple\b|i swear\b"
    ),
    triggers=frozenset((
        "guarantee guarantees guaranteed guaranteeing definitely 100 hundred promise promises promised "
        "sure certainly surely doubt risk fail fails assured absolutely double triple swear"
    ).split()),
    zh=re.compile(
        r"保证(?!金)|百分之百|百分百|一定(?![很要是也的])|肯定(?:会|能|可以|让|帮|给|没问题)|绝对(?:会|能|可以|没问题)"
        r"|承诺|包您|包你|稳赚|必定|必然会|毫无疑问|翻倍"
    ),
)
# A promise word right after a negation is a hedge ("I can't guarantee", "不能保证", "不一定").
_NEGATION_EN = re.compile(r"\b(?:not|no|never|cannot|can't|won't|don't|doesn't|couldn't|wouldn't|can not|nobody)"
                          r"\b[\w ']{0,12}$")
_NEGATION_ZH = re.compile(r"(?:不|未|无法|没法|没办法|不能|不敢|难以|未必|不会)[\u4e00-\u9fff]{0,2}$")


@register_rule("forbidden_words")
def forbidden_words(response: str, ctx: RuleContext) -> RuleResult:
    """Over-promising: guarantee, definitely, 100%, promise, for sure, ...; 保证, 一定 (not
    一定很忙), 百分之百, 承诺, 翻倍, .... Negated uses ("I can't guarantee", "不能保证") are hedges."""
    low = lowered(response)
    tags = []
    for m in sorted(_PROMISE.find(response), key=lambda m: m.start()):
        before = low[max(0, m.start() - 20):m.start()]
        negation = _NEGATION_ZH if "\u4e00" <= m.group(0)[0] <= "\u9fff" else _NEGATION_EN
        if not negation.search(before):
            tags.append(m.group(0))
    return violations(tags)


# ---------------------------------------------------------------------------- repeated phrasing
MIN_STOCK_SIZE = 3  # a sentence shorter than this (Latin words + CJK chars/2) is not "stock"
NEAR_DUPLICATE_JACCARD = 0.8  # token/bigram Jaccard at or above which two sentences are the same


@register_rule("repeated_phrasing")
def repeated_phrasing(response: str, ctx: RuleContext) -> RuleResult:
    """A sentence the agent already said, in an earlier turn or earlier in this reply,
    verbatim or nearly (Jaccard of words / CJK bigrams >= 0.8 and the same numbers: a new
    price is new content). The hotel's words never count. Short sentences ("I understand.",
    "谢谢您！": under 3 words or 6 CJK characters) are ordinary, not stock.

    Holding the line is allowed once: a reply whose only price request repeats the request
    of the agent's last turn (after the hotel pushed back) does not fire; the same request
    from an older turn, or pasted in beside a new request, does."""
    parts = split_sentences(lowered(response))
    if not ctx.prior_agent_sentences and len(parts) < 2:
        return CLEAN
    keyed = ((sentence, sentence_key(sentence)) for sentence in parts)
    sentences = [(sentence, key) for sentence, key in keyed if key.size >= MIN_STOCK_SIZE]
    asking: list[bool] | None = None  # which sentences ask for a price; worked out only if needed
    earlier: dict[frozenset[str], list[PriorSentence]] = {}  # this reply's own sentences so far
    tags = []
    for i, (sentence, key) in enumerate(sentences):
        matches = _repeats(key, ctx, earlier)
        earlier.setdefault(key.numbers, []).append(PriorSentence(key, True))
        if not matches:
            continue
        if not any(p.older for p in matches):  # repeats the last turn only: holding the line?
            if asking is None:
                asking = [bool(k.numbers) and bool(word_starts(ASK_CUE, s)) for s, k in sentences]
            if asking[i] and sum(asking) == 1:
                continue
        kind = "verbatim" if any(p.key.norm == key.norm for p in matches) else "near"
        tags.append(f"{kind}:{sentence[:40]}")
    return violations(tags)


def _repeats(key: SentenceKey, ctx: RuleContext, earlier: dict[frozenset[str], list[PriorSentence]]
             ) -> list[PriorSentence]:
    """Earlier sentences (prior agent turns, then this reply) that `key` repeats."""
    same = ctx.prior_by_norm.get(key.norm)
    if same is not None and same.older:
        return [same]  # enough to fire: no need to look further
    out = [same] if same is not None else []
    toks, n = key.tokens, len(key.tokens)
    lo, hi = NEAR_DUPLICATE_JACCARD * n, n / NEAR_DUPLICATE_JACCARD  # Jaccard <= min/max of the sizes
    # only sentences with the same numbers can repeat it: a new price is new content
    for p in (*ctx.prior_by_numbers.get(key.numbers, ()), *earlier.get(key.numbers, ())):
        if p is same:
            continue
        m = len(p.key.tokens)
        if lo <= m <= hi:
            inter = len(toks & p.key.tokens)
            if inter >= NEAR_DUPLICATE_JACCARD * (n + m - inter):
                out.append(p)
    return out
