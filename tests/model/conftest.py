"""Shared fixtures: a small bilingual negotiation corpus and tiny models built once per run."""

from __future__ import annotations

import random

import pytest

from repo_ray.config import ModelConfig, TinyModelConfig
from repo_ray.model import TinyModelPaths, ensure_tiny_models, load_policy, load_reward_model, load_tokenizer

_HOTELS = ["Harbour View Hotel", "Grand Plaza", "Lotus Garden Inn", "Riverside Suites", "Maple Court"]
_HOTELS_ZH = ["海景酒店", "君悦大酒店", "莲花花园酒店", "江畔套房", "枫林阁"]
_ROOMS = ["deluxe king", "twin room", "executive suite", "family room"]
_ROOMS_ZH = ["豪华大床房", "双床房", "行政套房", "家庭房"]
_EN = [
    "Hello, this is Lin from the OTA partnership team at {hotel}.",
    "Competitors nearby list the {room} at {p1} per night, yours is {p2}.",
    "Could you consider {p1} for the {room} from May 3 to May 5?",
    "I understand your concern about the season; we can bring more bookings.",
    "Thank you, so the {room} will be {p1} per night, is that right?",
    "We cannot go below {p2}, our costs are high this month.",
    "Let me check with the revenue manager and get back to you.",
    "Great, I will update the listing today and send you a confirmation.",
]
_ZH = [
    "您好，我是{hotel}合作团队的小林。",
    "附近同类酒店的{room}每晚{p1}元，贵店是{p2}元。",
    "请问{room}在5月3日到5月5日能否调整到{p1}元？",
    "理解您的顾虑，旺季期间我们可以为您带来更多订单。",
    "好的，那{room}就是每晚{p1}元，对吗？",
    "我们不能低于{p2}元，这个月成本很高。",
    "我需要和收益经理确认一下，稍后回复您。",
    "太好了，我今天就更新价格并发送确认。",
]


def negotiation_corpus(n: int = 200, seed: int = 0) -> list[str]:
    """~n mixed English/Chinese lines shaped like BD-agent / hotel-manager turns; some are
    multi-line offers with indented items, so BPE sees newlines followed by spaces."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        p1 = rng.randrange(280, 900)
        p2 = p1 + rng.randrange(10, 120)
        if i % 5 == 4:
            rooms = rng.sample(_ROOMS, 2)
            line = f"Our proposal:\n  - {rooms[0]}: {p1}\n  - {rooms[1]}: {p2}\n\n  Thank you."
        elif i % 3 == 2:
            line = rng.choice(_ZH).format(hotel=rng.choice(_HOTELS_ZH), room=rng.choice(_ROOMS_ZH), p1=p1, p2=p2)
        else:
            line = rng.choice(_EN).format(hotel=rng.choice(_HOTELS), room=rng.choice(_ROOMS), p1=p1, p2=p2)
        lines.append(line)
    return lines


TINY = TinyModelConfig(
    vocab_size=400,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=128,
    max_position_embeddings=512,
    tokenizer_corpus_limit=1000,
)
SEED = 7
CORPUS_KEY = "tests-negotiation-v1"


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return negotiation_corpus()


@pytest.fixture(scope="session")
def model_cfg(tmp_path_factory) -> ModelConfig:
    return ModelConfig(cache_dir=str(tmp_path_factory.mktemp("model-cache")), tiny=TINY, dtype="float32")


@pytest.fixture(scope="session")
def tiny_paths(model_cfg, corpus) -> TinyModelPaths:
    return ensure_tiny_models(model_cfg, lambda: corpus, CORPUS_KEY, SEED)


@pytest.fixture(scope="session")
def tokenizer(tiny_paths):
    return load_tokenizer(tiny_paths.tokenizer_dir)


@pytest.fixture
def policy(tiny_paths):
    """A fresh copy per test: LoRA wrapping changes a model in place."""
    return load_policy(tiny_paths.policy_dir)


@pytest.fixture
def reward_model(tiny_paths):
    return load_reward_model(tiny_paths.reward_dir)
