"""Synthetic data: seeded, schema-valid, every defect represented, length not predictive."""

import collections
import random
import re

import pytest

from repo_ray.config import DataConfig
from repo_ray.domain.datagen import (
    MINIMAL_KINDS,
    generate_scenario,
    minimal_pair_rows,
    play_expert_dialogue,
    preference_rows,
    write_dataset,
)
from repo_ray.domain.defects import DEFECTS, SEVERITY_RANK, Severity, get_defect
from repo_ray.domain.scenario import Persona
from repo_ray.domain.schemas import FILES, load_rows
from repo_ray.domain.text import extract_numbers
from repo_ray.types import Role

SMALL = DataConfig(sft_dialogues=12, preference_pairs=160, rl_scenarios=10, eval_dialogues=12, bad_cases=32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("data")
    write_dataset(SMALL, out)
    return out


def test_every_file_written_with_requested_rows_and_valid(data_dir):
    sizes = {"sft": 12, "preference": 160, "rl": 10, "eval": 12, "bad_cases": 32}
    for kind, n in sizes.items():
        loaded = load_rows(kind, data_dir)
        assert len(loaded.rows) == n and loaded.dropped == 0


def test_same_seed_same_bytes_of_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    cfg = DataConfig(sft_dialogues=3, preference_pairs=20, rl_scenarios=3, eval_dialogues=3, bad_cases=5)
    write_dataset(cfg, a)
    write_dataset(cfg, b)
    for spec in FILES.values():
        import pyarrow.parquet as pq

        assert pq.read_table(a / spec.filename).equals(pq.read_table(b / spec.filename))


def test_rejected_responses_carry_registered_defects_evenly(data_dir):
    pairs = load_rows("preference", data_dir).rows
    assert collections.Counter(p.pair_kind for p in pairs) == {"template": 120, "fact_minimal": 40}  # 25% minimal
    counts = collections.Counter(p.defect for p in pairs if p.pair_kind == "template")
    assert set(counts) == set(DEFECTS)
    assert max(counts.values()) - min(counts.values()) <= 1
    assert all(p.severity == DEFECTS[p.defect].severity.value for p in pairs)
    assert all(p.chosen != p.rejected for p in pairs)


def test_length_alone_does_not_predict_preference():
    pairs = preference_rows(640, seed=3, zh_fraction=0.2, max_room_types=3)
    chosen_longer = sum(len(p["chosen"]) > len(p["rejected"]) for p in pairs) / len(pairs)
    assert 0.35 <= chosen_longer <= 0.65
    longer_per_defect = collections.defaultdict(list)
    for p in pairs:
        longer_per_defect[p["defect"]].append(len(p["chosen"]) > len(p["rejected"]))
    both_ways = [d for d, v in longer_per_defect.items() if 0 < sum(v) < len(v)]
    assert len(both_ways) >= len(DEFECTS) // 2


def test_bad_cases_cover_every_severity(data_dir):
    cases = load_rows("bad_cases", data_dir).rows
    assert {c.severity for c in cases} == {s.value for s in Severity}
    assert all(c.bad_response for c in cases)


def test_eval_scenarios_balance_personas_and_are_disjoint_from_training(data_dir):
    evals = load_rows("eval", data_dir).rows
    assert collections.Counter(s.persona for s in evals) == {p: 2 for p in Persona}
    train_ids = {s.scenario_id for s in load_rows("rl", data_dir).rows}
    assert not train_ids & {s.scenario_id for s in evals}


def test_expert_states_only_numbers_it_was_given_and_respects_price_bounds():
    for i in range(60):
        sc = generate_scenario(random.Random(i), f"t-{i}", 0.3, 3)
        d = play_expert_dialogue(sc, seed=i)
        seen = set(sc.allowed_numbers())
        for m in d.messages[1:]:
            if m.role is Role.AGENT:
                assert set(extract_numbers(m.text)) <= seen, m.text
                assert "target" not in m.text.lower() and "floor" not in m.text.lower()
            seen |= set(extract_numbers(m.text))


def test_expert_dialogues_reach_deals_with_cooperative_hotels_and_not_with_silent_ones():
    outcomes = collections.defaultdict(list)
    for i in range(36):
        persona = list(Persona)[i % 6]
        sc = generate_scenario(random.Random(i), f"o-{i}", 0.0, 2, persona)
        outcomes[persona].append(play_expert_dialogue(sc, seed=i).outcome)
    assert all(o == "deal" for o in outcomes[Persona.COOPERATIVE])
    assert all(o == "no_reply" for o in outcomes[Persona.SILENT])


def test_defect_registry():
    assert len(DEFECTS) == 17
    assert get_defect("leaked_internal_term").severity is Severity.SEVERE
    assert SEVERITY_RANK[Severity.SEVERE] > SEVERITY_RANK[Severity.MINOR]
    with pytest.raises(KeyError, match="unknown defect 'nope'"):
        get_defect("nope")
    for d in DEFECTS.values():
        assert re.fullmatch(r"[a-z_]+", d.name) and d.catcher in ("rule", "judge")


def _edit(chosen: str, rejected: str) -> tuple[str, str]:
    """The differing middle of two texts (common prefix and suffix removed)."""
    i = 0
    while i < min(len(chosen), len(rejected)) and chosen[i] == rejected[i]:
        i += 1
    j = 0
    while j < min(len(chosen), len(rejected)) - i and chosen[-1 - j] == rejected[-1 - j]:
        j += 1
    return chosen[i: len(chosen) - j], rejected[i: len(rejected) - j]


def test_minimal_pairs_change_exactly_one_fact_of_an_expert_reply():
    rows = minimal_pair_rows(80, seed=2, zh_fraction=0.3, max_room_types=3)
    kinds = list(MINIMAL_KINDS)
    assert [r["defect"] for r in rows] == [MINIMAL_KINDS[kinds[k % 4]] for k in range(80)]
    for k, r in enumerate(rows):
        from repo_ray.domain.scenario import Scenario

        sc = Scenario.from_row(r["scenario"])
        known = set(sc.allowed_numbers()) | {n for m in r["context"] for n in extract_numbers(m["text"])}
        assert set(extract_numbers(r["chosen"])) <= known, r["chosen"]  # the chosen side is the true expert reply
        kind = kinds[k % 4]
        was, now = _edit(r["chosen"], r["rejected"])
        if kind in ("false_competitor_price", "false_current_price"):
            true_n, false_n = set(extract_numbers(r["chosen"])), set(extract_numbers(r["rejected"]))
            assert len(false_n - true_n) == 1 and not (false_n - true_n) & known, (r["chosen"], r["rejected"])
            cited = {p for room in sc.room_types for p in (
                room.competitor_prices if kind == "false_competitor_price" else (room.current_price,))}
            assert (true_n - false_n) <= cited and len(r["chosen"]) == len(r["rejected"]) or len(was) < 6
        elif kind == "ask_below_floor":
            low = (set(extract_numbers(r["rejected"])) - set(extract_numbers(r["chosen"]))).pop()
            assert any(low < room.floor_price for room in sc.room_types)
        else:
            assert was == "" and ("target" in now or "目标价" in now)
        assert r["pair_kind"] == "fact_minimal" and len(was) + len(now) < 40  # one small edit, same reply


def test_a_price_ending_a_sentence_is_a_whole_price_for_minimal_edits():
    from repo_ray.domain.datagen import _price_spans

    assert [m.group() for m in _price_spans("Nearby is ¥880, yours is ¥970.", 970)] == ["¥970"]
    assert _price_spans("yours is ¥9705 or ¥970.50", 970) == []  # inside a longer number, not the price


def test_preference_files_without_pair_kind_load_as_template_pairs(data_dir, tmp_path):
    import pyarrow.parquet as pq

    name = FILES["preference"].filename
    pq.write_table(pq.read_table(data_dir / name).drop_columns(["pair_kind"]), tmp_path / name)
    loaded = load_rows("preference", tmp_path)
    assert len(loaded.rows) == 160 and loaded.dropped == 0
    assert {p.pair_kind for p in loaded.rows} == {"template"}
