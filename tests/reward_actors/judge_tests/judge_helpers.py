"""Shared values of the judge tests.

This directory is not called `judge`: under tests/reward_actors/__init__.py, pytest imports
it as the package `reward_actors.<dir>`, and `reward_actors.judge` would shadow the real
reward_actors/judge for every test in the run."""

from __future__ import annotations

from repo_ray.config import JudgeConfig
from repo_ray.domain.scenario import Persona, RoomType, Scenario
from repo_ray.types import Message, Role
from reward_actors.judge.prompt import JudgeContext

SCENARIO = Scenario(
    "judge-test-0", "Harbor Hotel", "Hangzhou", 4, "2027-05-01", "2027-05-03", Persona.HOSTILE, "en",
    (RoomType("Deluxe King", 900.0, (820.0, 860.0), 800.0, 740.0),
     RoomType("Standard Twin", 600.0, (540.0, 560.0), 540.0, 500.0)),
)
HISTORY = (
    Message(Role.AGENT, "Hi, this is Alex from the travel platform, calling about Harbor Hotel's room prices."),
    Message(Role.HOTEL, "We're busy. What do you want?"),
)


def context(response: str, history=HISTORY) -> JudgeContext:
    return JudgeContext(SCENARIO, tuple(history), response, "evidence")


def distinct_contexts(n: int, tag: str) -> list[JudgeContext]:
    return [context(f"I understand. Similar hotels nearby sell the Deluxe King at ¥820 ({tag} {i}).") for i in range(n)]


def judge_cfg(base_url: str, **overrides) -> JudgeConfig:
    """Small timeouts and backoffs so fault tests take fractions of a second."""
    base = dict(base_url=base_url, api_key_env=None, timeout_s=2.0, max_retries=2, backoff_base_s=0.02,
                backoff_max_s=2.0, cache=False)
    base.update(overrides)
    return JudgeConfig(**base)
