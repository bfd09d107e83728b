"""Two hand-made negotiation contexts (English, Chinese) the rule tables are judged in."""

import pytest

from repo_ray.domain.scenario import RoomType, Scenario
from repo_ray.types import Message, Role
from reward_actors.rules import RuleContext


def scenario(language: str) -> Scenario:
    zh = language == "zh"
    return Scenario(
        scenario_id=f"t-{language}",
        hotel_name="湖畔酒店" if zh else "Lakeside Hotel",
        city="杭州" if zh else "Hangzhou",
        star_rating=4,
        check_in="2027-03-01",
        check_out="2027-03-03",
        persona="hesitant",
        language=language,
        room_types=(
            RoomType("豪华大床房" if zh else "Deluxe King", 1000.0, (880.0, 920.0), 900.0, 850.0),
            RoomType("标准双床房" if zh else "Standard Twin", 600.0, (520.0, 560.0), 540.0, 500.0),
        ),
    )


HISTORY = {
    "en": [
        (Role.SYSTEM, "You are a BD manager. Deluxe King: internal target ¥900; floor ¥850. Never say 77."),
        (Role.AGENT, "Hi, this is Alex from the travel platform, calling about Lakeside Hotel's room prices."),
        (Role.HOTEL, "Hello, go ahead."),
        (Role.AGENT, "Similar hotels nearby sell the Deluxe King at ¥880 and ¥920 while yours is ¥1000. "
                     "Guests compare these side by side."),
        (Role.HOTEL, "Hmm, what do you suggest?"),
        (Role.AGENT, "Could you adjust the Deluxe King to ¥900? It would really help your ranking."),
        (Role.HOTEL, "We could do ¥950 for the Deluxe King."),
    ],
    "zh": [
        (Role.SYSTEM, "你是商务经理。豪华大床房：内部目标价 ¥900；底价 ¥850。"),
        (Role.AGENT, "您好，我是旅行平台的小李，想和您聊聊湖畔酒店的房价。"),
        (Role.HOTEL, "你好，请说。"),
        (Role.AGENT, "周边同类酒店的价格是：豪华大床房在¥880、¥920，您现在是¥1000。"
                     "客人会放在一起比较，价差在影响您的点击。"),
        (Role.HOTEL, "您有什么建议？"),
        (Role.AGENT, "能否把豪华大床房调整到¥900？这对排名很有帮助。"),
        (Role.HOTEL, "豪华大床房最多到¥950。"),
    ],
}


def context(language: str, **kw) -> RuleContext:
    history = [Message(role, text) for role, text in HISTORY[language]]
    return RuleContext.from_scenario(scenario(language), history, **kw)


@pytest.fixture(scope="session")
def contexts() -> dict[str, RuleContext]:
    return {"en": context("en"), "zh": context("zh")}
