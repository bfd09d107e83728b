"""Hand-made scenarios, dialogues and findings for the evaluation tests."""

from __future__ import annotations

from repo_ray.domain.scenario import Persona, RoomType, Scenario
from repo_ray.eval.metrics import ResponseFindings
from repo_ray.types import Message, Role

KING = RoomType("Deluxe King", 1000.0, (920.0, 940.0), 900.0, 850.0)
TWIN = RoomType("Standard Twin", 600.0, (540.0, 560.0), 540.0, 500.0)
ONE_ROOM = Scenario("s-one", "Harbor Hotel", "Hangzhou", 4, "2027-05-01", "2027-05-03", Persona.COOPERATIVE, "en",
                    (KING,))
TWO_ROOMS = Scenario("s-two", "Harbor Hotel", "Hangzhou", 4, "2027-05-01", "2027-05-03", Persona.PARTIAL, "en",
                     (KING, TWIN))
OPENING = "Hi, this is Alex from the travel platform, calling about Harbor Hotel's room prices."


def a(text: str) -> Message:
    return Message(Role.AGENT, text)


def h(text: str) -> Message:
    return Message(Role.HOTEL, text)


def reply(judge: float = 0.5, turn: int = 0, items: dict | None = None, rules: dict | None = None) -> ResponseFindings:
    """A scored reply with the given normalised judge score, item scores and fired rules."""
    return ResponseFindings(turn, f"reply {turn}", judge, dict(items or {}), {}, dict(rules or {}))
