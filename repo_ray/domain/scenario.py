"""A negotiation scenario: one hotel, one or more room-type tickets, a persona and a language.

Target and floor prices are internal: the agent sees them in its system prompt and must
never state them as such (DESIGN.md §4).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

Language = Literal["en", "zh"]
LANGUAGES: tuple[str, ...] = ("en", "zh")


class Persona(StrEnum):
    """How the simulated hotel manager behaves."""

    COOPERATIVE = "cooperative"
    HESITANT = "hesitant"  # needs market evidence before it moves
    PRICE_ANCHORED = "price_anchored"  # counter-offers, converging slowly
    HOSTILE = "hostile"  # rude, moves only a little, may hang up
    SILENT = "silent"  # does not reply; silence is not consent
    PARTIAL = "partial"  # agrees for some room types only


@dataclass(frozen=True, slots=True)
class RoomType:
    name: str
    current_price: float
    competitor_prices: tuple[float, ...]
    target_price: float
    floor_price: float

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("room type name is empty")
        prices = (self.current_price, self.target_price, self.floor_price, *self.competitor_prices)
        if not all(math.isfinite(p) for p in prices):  # NaN passes every comparison below
            raise ValueError(f"room type {self.name!r}: prices must be finite numbers, got {list(prices)}")
        if not 0 < self.floor_price <= self.target_price <= self.current_price:
            raise ValueError(
                f"room type {self.name!r}: need 0 < floor ({self.floor_price:g}) <= target "
                f"({self.target_price:g}) <= current ({self.current_price:g})"
            )
        if any(p <= 0 for p in self.competitor_prices):
            raise ValueError(f"room type {self.name!r}: competitor prices must be positive")

    def to_row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "current_price": float(self.current_price),
            "competitor_prices": [float(p) for p in self.competitor_prices],
            "target_price": float(self.target_price),
            "floor_price": float(self.floor_price),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RoomType:
        return cls(
            name=str(row["name"]),
            current_price=float(row["current_price"]),
            competitor_prices=tuple(float(p) for p in row["competitor_prices"] or ()),
            target_price=float(row["target_price"]),
            floor_price=float(row["floor_price"]),
        )


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Scenario:
    scenario_id: str
    hotel_name: str
    city: str
    star_rating: int
    check_in: str  # ISO date
    check_out: str  # ISO date
    persona: Persona
    language: Language
    room_types: tuple[RoomType, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "persona", Persona(self.persona))
        if not self.scenario_id:
            raise ValueError("scenario_id is empty")
        if self.language not in LANGUAGES:
            raise ValueError(f"language {self.language!r} is not one of {LANGUAGES}")
        if not 1 <= self.star_rating <= 5:
            raise ValueError(f"star_rating {self.star_rating} outside 1..5")
        if not self.room_types:
            raise ValueError("scenario has no room types")
        if len({r.name for r in self.room_types}) != len(self.room_types):
            raise ValueError("room type names repeat")
        for d in (self.check_in, self.check_out):
            if not _DATE.match(d):
                raise ValueError(f"date {d!r} is not YYYY-MM-DD")
        if self.check_out <= self.check_in:
            raise ValueError(f"check_out {self.check_out} is not after check_in {self.check_in}")

    def room(self, name: str) -> RoomType:
        for r in self.room_types:
            if r.name == name:
                return r
        raise KeyError(name)

    def allowed_numbers(self) -> set[float]:
        """Numbers the agent may state without hallucinating: the facts it was given (minus
        nothing: leaking target/floor is the leakage rule's business, not this one's)."""
        nums: set[float] = {float(self.star_rating)}
        for d in (self.check_in, self.check_out):
            y, m, day = d.split("-")
            nums |= {float(y), float(m), float(day)}
        for r in self.room_types:
            nums |= {r.current_price, r.target_price, r.floor_price, *r.competitor_prices}
        return nums

    def to_row(self) -> dict[str, Any]:
        return {
            "scenario_id": self.scenario_id,
            "hotel_name": self.hotel_name,
            "city": self.city,
            "star_rating": int(self.star_rating),
            "check_in": self.check_in,
            "check_out": self.check_out,
            "persona": self.persona.value,
            "language": self.language,
            "room_types": [r.to_row() for r in self.room_types],
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Scenario:
        if not isinstance(row, Mapping):
            raise ValueError("scenario is not a struct")
        try:
            persona = Persona(row["persona"])
        except ValueError:
            raise ValueError(f"unknown persona {row['persona']!r}") from None
        return cls(
            scenario_id=str(row["scenario_id"] or ""),
            hotel_name=str(row["hotel_name"]),
            city=str(row["city"]),
            star_rating=int(row["star_rating"]),
            check_in=str(row["check_in"]),
            check_out=str(row["check_out"]),
            persona=persona,
            language=row["language"],
            room_types=tuple(RoomType.from_row(r) for r in row["room_types"] or ()),
        )


def format_price(p: float) -> str:
    """Prices are whole currency units in this domain; keep cents only when present."""
    return f"¥{int(p)}" if float(p).is_integer() else f"¥{p:.2f}"


def render_system_prompt(s: Scenario) -> str:
    """The agent's system prompt: its role, the SOP, the guardrails and the scenario facts."""
    if s.language == "zh":
        rooms = "\n".join(
            f"- {r.name}：当前售价 {format_price(r.current_price)}；竞品价 "
            f"{'、'.join(format_price(p) for p in r.competitor_prices)}；"
            f"内部目标价 {format_price(r.target_price)}；底价 {format_price(r.floor_price)}"
            for r in s.room_types
        )
        return (
            "你是在线旅行平台的商务拓展经理，与酒店经理协商房价。流程：开场、市场依据、明确报价、异议处理、确认、结束。"
            "不得承诺无法保证的事，不得编造数字，不得透露内部目标价、底价或工单。\n"
            f"酒店：{s.hotel_name}（{s.city}，{s.star_rating}星）；入住 {s.check_in} 至 {s.check_out}。\n{rooms}"
        )
    rooms = "\n".join(
        f"- {r.name}: current {format_price(r.current_price)}; competitors "
        f"{', '.join(format_price(p) for p in r.competitor_prices)}; internal target {format_price(r.target_price)}; "
        f"floor {format_price(r.floor_price)}"
        for r in s.room_types
    )
    return (
        "You are a business-development manager of an online travel agency negotiating room prices with a hotel "
        "manager. SOP: opening, evidence, ask, objection handling, confirmation, close. Never over-promise, never "
        "invent numbers, never reveal the internal target, the floor or the work order.\n"
        f"Hotel: {s.hotel_name} ({s.city}, {s.star_rating}-star); stay {s.check_in} to {s.check_out}.\n{rooms}"
    )
