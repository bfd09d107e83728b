"""Rules on the surface of a reply: format breakage, mixed language, chain-of-thought leakage
and length. Each is a pure function of (reply, RuleContext); see base.py for the score
convention (-1 per violation, at most -2) and for why patterns are lower-case literals.
"""

from __future__ import annotations

import re

from reward_actors.rules.base import CLEAN, RuleContext, RuleResult, Terms, lowered, register_rule, violations

# ---------------------------------------------------------------------------- format breakage
# One named group per kind of debris; each kind found counts once. <think> tags are left to
# cot_leakage so one slip is not charged twice. Matched on the lower-cased reply.
_FORMAT = re.compile(
    "|".join(
        f"(?P<{name}>{pattern})"
        for name, pattern in (
            ("special_token", r"<\|[^|<>\s]{1,40}\|>(?:assistant|user|system)?|</?s>|\[/?inst\]|<</?sys>>"),
            ("role_tag", r"\[(?:agent|assistant|user|system|hotel|end|start|eos|bos)\]"),
            ("code_fence", r"```(?:json|python|text|markdown)?"),
            ("json_debris", r"\{\s*\"[\w ]{1,30}\"\s*:"),
            ("markdown", r"\*\*[^*\n]{1,80}\*\*"),
            ("html_tag", r"</?(?:p|br|div|span|b|i|u|em|strong|ul|ol|li|html|body|h[1-6])\b[^>]{0,40}>"),
            ("placeholder", r"\{\{?\s*[a-z_][\w.]{0,30}\s*\}\}?|\[(?:placeholder|name|room|price|hotel|date|city)"
                            r"[^\]]{0,20}\]|<(?:name|room|price|hotel|date|city)>"),
            ("garbage", r"\ufffd|[\x00-\x08\x0b\x0c\x0e-\x1f]|\\n|\\u[0-9a-f]{4}"),
        )
    )
)
# Every _FORMAT match starts with one of these: the cheap test that skips most replies.
_FORMAT_CHARS = re.compile(r"[<\[`{*\\\ufffd\x00-\x08\x0b\x0c\x0e-\x1f]")
# Line-start debris, tried only at the start of the reply and of each line.
_LINE_START = re.compile(
    r"[ \t]*(?:(?P<role_tag>(?:agent|assistant|user|system|hotel|bd|客服|助手|酒店经理|用户)[ \t]*[:：])"
    r"|(?P<markdown>#{1,6}[ \t]))"
)
_PAIRS = (("(", ")"), ("[", "]"), ("{", "}"), ("（", "）"), ("【", "】"), ("「", "」"), ("“", "”"))
_BRACKETS = frozenset("()[]{}（）【】「」“”")


@register_rule("format_breakage")
def format_breakage(response: str, ctx: RuleContext) -> RuleResult:
    """Special tokens, role tags, code fences, JSON/markdown/HTML, template placeholders,
    mojibake or escaped control characters, and unbalanced brackets or CJK quotes."""
    low = lowered(response)
    kinds = dict.fromkeys(m.lastgroup for m in _FORMAT.finditer(low)) if _FORMAT_CHARS.search(low) else {}
    for start in (0, *(i + 1 for i, c in enumerate(low) if c == "\n")) if "\n" in low else (0,):
        m = _LINE_START.match(low, start)
        if m:
            kinds[m.lastgroup] = None
    if not _BRACKETS.isdisjoint(response):
        for a, b in _PAIRS:
            if response.count(a) != response.count(b):
                kinds["unbalanced"] = None
                break
    return violations([k for k in kinds if k])


# ---------------------------------------------------------------------------- mixed language
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# A Latin word that starts lower-case: capitalised words in a Chinese reply are mostly
# proper names (Hilton Garden Inn, Booking.com) and all-caps ones acronyms (OTA, VIP).
_LOWER_WORD = re.compile(r"(?<![A-Za-z])[a-z][A-Za-z]+(?:-[A-Za-z]+)?")
# Latin tokens ordinary in Chinese business chat.
_ZH_LATIN_OK = frozenset({"app", "wifi", "wi-fi", "ok", "vip", "ota", "pms", "cbd", "spa", "logo", "ebooking", "id",
                          "ipad", "iphone", "email", "e-mail", "wechat", "kpi", "vs", "pk", "ktv"})
EN_CJK_LIMIT = 2  # Han/kana/hangul characters an English reply may carry before it fires
ZH_LATIN_LIMIT = 3  # lower-case Latin words (outside _ZH_LATIN_OK) a Chinese reply may carry before it fires


def _latin_words(text: str) -> int:
    return sum(w.lower() not in _ZH_LATIN_OK for w in _LOWER_WORD.findall(text))


@register_rule("mixed_language")
def mixed_language(response: str, ctx: RuleContext) -> RuleResult:
    """Chinese in an English reply (>= 2 CJK characters) or English in a Chinese reply (>= 3
    lower-case Latin words that are not common chat tokens such as app or wifi). Hotel, city
    and room names, currency signs, numbers, dates and acronyms (OTA) never count, nor does
    markup debris such as <|im_start|>assistant (that is format_breakage's)."""
    # counted on the raw reply first; names and debris are taken out only when it would fire
    if ctx.language == "en":
        if len(_CJK.findall(response)) < EN_CJK_LIMIT:
            return CLEAN
        n = len(_CJK.findall(ctx.strip_names(response)))
        return violations([f"cjk_chars:{n}"]) if n >= EN_CJK_LIMIT else CLEAN
    if _latin_words(response) < ZH_LATIN_LIMIT:
        return CLEAN
    n = _latin_words(_FORMAT.sub(" ", ctx.strip_names(response)))
    return violations([f"latin_words:{n}"]) if n >= ZH_LATIN_LIMIT else CLEAN


# ---------------------------------------------------------------------------- chain-of-thought leakage
_COT = Terms(
    en=re.compile(
        r"<think>|</think>|<thinking>|</thinking>|<reasoning>|</reasoning>|<scratchpad>|</scratchpad>|<plan>|</plan>"
        r"|<analysis>|</analysis>|< think>|</ think>"
        r"|let me (?:think|reason|analy[sz]e|plan|figure)\b|step by step\b|step-by-step\b|think through\b"
        r"|think this through\b|thinking this through\b|thinking through\b"
        r"|my plan\b|my reasoning\b|my strategy\b|my thought process\b|my next move\b|my approach here\b"
        r"|chain of thought\b|chain-of-thought\b|note to self\b|internal note\b|internal monologue\b|as an ai\b"
        r"|the user\b|i should (?:first |now |then )?(?:anchor|push|lead with|start with|open with|concede|pressure"
        r"|stall)\b|the hotel (?:sounds|seems|appears|is being)\b|the manager (?:sounds|seems|appears|is being)\b"
    ),
    triggers=frozenset((
        "think thinking reasoning scratchpad plan analysis reason analyze analyse figure step strategy "
        "thought move approach chain note monologue ai user should sounds seems appears being"
    ).split()),
    zh=re.compile(
        r"让我(?:先)?(?:一步步|一步一步|逐步|仔细)?(?:想想|想一想|思考|分析|推理)|一步步(?:思考|分析|推理)"
        r"|一步一步(?:思考|分析|推理)|逐步(?:思考|分析|推理)|思考过程|推理过程|思路[:：]|分析[:：]|计划[:：]"
        r"|我的计划|我的策略|我的思路|内心独白|我应该(?:先|再|要)?(?:锚定|压价|施压|报|拖)"
        r"|酒店(?:有点|似乎|好像|看起来)(?:犹豫|不耐烦|生气|强硬)|对方(?:有点|似乎|好像|看起来)(?:犹豫|不耐烦|生气|强硬)"
        r"|经理(?:有点|似乎|好像|看起来)(?:犹豫|不耐烦|生气|强硬)"
    ),
)
# "Plan:", "Reasoning:" heading a line of the reply.
_COT_LINE = re.compile(
    r"[ \t]*(?:thoughts?|thinking|reasoning|plan|analysis|internal note|note to self|strategy)[ \t]*:"
)


@register_rule("cot_leakage")
def cot_leakage(response: str, ctx: RuleContext) -> RuleResult:
    """Reasoning that was meant to stay hidden: <think> tags, "let me think step by step",
    "my plan:", notes about the hotel in the third person, and their Chinese equivalents."""
    low = lowered(response)
    found = [m.group(0) for m in _COT.find(response)]
    for start in (0, *(i + 1 for i, c in enumerate(low) if c == "\n")) if "\n" in low else (0,):
        m = _COT_LINE.match(low, start)
        if m:
            found.append(m.group(0).strip())
    return violations(found)


# ---------------------------------------------------------------------------- overlength
ZH_BUDGET_RATIO = 0.4  # a Chinese character carries ~2.5 English characters' worth of content


def length_budget(ctx: RuleContext) -> int:
    return int(ctx.overlength_chars * ZH_BUDGET_RATIO) if ctx.language == "zh" else ctx.overlength_chars


@register_rule("overlength")
def overlength(response: str, ctx: RuleContext) -> RuleResult:
    """Longer than the character budget (overlength_chars; x0.4 for Chinese): -1, or -2 past twice it."""
    budget = length_budget(ctx)
    n = len(response.strip())
    if n <= budget:
        return CLEAN
    tag = f"chars:{n}>{budget}"
    return violations([tag, tag] if n > 2 * budget else [tag])
