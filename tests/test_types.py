"""The contracts of DESIGN.md §6 reject values that would corrupt training."""

import hashlib

import pytest

from repo_ray.types import (
    AdapterAck,
    AdapterUpdate,
    AdapterVerificationError,
    ContractError,
    Message,
    RewardResult,
    Role,
    SampleFate,
    SourceResult,
    SourceStatus,
    Trajectory,
)


def make_traj(**kw):
    base = dict(
        sample_id="s1", scenario_id="sc1", turn_index=0,
        messages=[{"role": "system", "text": "facts"}, {"role": "hotel", "text": "hi"}],
        response_text="hello", prompt_token_ids=[1, 2, 3], response_token_ids=[4, 5],
        response_logprobs=[-0.5, -1.0], response_mask=[1, 1], sop_stage="opening", adapter_version=0,
    )
    base.update(kw)
    return Trajectory(**base)


def test_trajectory_accepts_consistent_values_and_parses_messages():
    t = make_traj()
    assert t.messages[1] == Message(Role.HOTEL, "hi")
    assert t.num_response_tokens == 2


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"response_mask": [1, 1, 1]}, "response_mask length 3 != 2"),
        ({"response_logprobs": [-0.5]}, "1 logprobs for 2 response tokens"),
        ({"response_logprobs": [-0.5, 0.3]}, "not a finite log-probability"),
        ({"response_logprobs": [-0.5, float("nan")]}, "not a finite log-probability"),
        ({"response_mask": [0, 0]}, "no trainable token"),
        ({"response_mask": [1, 2]}, "only 0/1"),
        ({"response_token_ids": []}, "empty response_token_ids"),
        ({"turn_index": -1}, "turn_index"),
        ({"sample_id": ""}, "sample_id"),
        ({"messages": [{"role": "assistant", "text": "x"}]}, "assistant"),
    ],
)
def test_trajectory_rejects_corrupting_values(kw, fragment):
    with pytest.raises((ContractError, ValueError), match=fragment):
        make_traj(**kw)


def test_source_result_never_uses_zero_as_a_missing_score():
    assert SourceResult(3.0, "ok").ok
    with pytest.raises(ContractError, match="status timeout must carry score None"):
        SourceResult(0.0, SourceStatus.TIMEOUT)
    with pytest.raises(ContractError, match="needs a finite score"):
        SourceResult(None, SourceStatus.OK)
    assert SourceResult(None, "rate_limited").status is SourceStatus.RATE_LIMITED


def test_reward_result_masked_iff_no_total():
    ok = {"rm": SourceResult(1.0, "ok")}
    RewardResult("s", 1.0, None, None, None, 1.0, ok, masked=False)
    RewardResult("s", None, None, None, None, None, {"rm": SourceResult(None, "timeout")}, masked=True,
                 reason="rm timeout")
    with pytest.raises(ContractError, match="masked sample must have r_total None"):
        RewardResult("s", 1.0, None, None, None, 1.0, ok, masked=True, reason="x")
    with pytest.raises(ContractError, match="needs a reason"):
        RewardResult("s", None, None, None, None, None, ok, masked=True)
    with pytest.raises(ContractError, match="unmasked sample needs a finite r_total"):
        RewardResult("s", 1.0, None, None, None, None, ok, masked=False)
    with pytest.raises(ContractError, match="needs r_model"):
        RewardResult("s", None, 5.0, None, None, 1.0, ok, masked=False)


def test_adapter_update_checksum_and_ack_verification():
    blob = b"safetensors-bytes"
    upd = AdapterUpdate.build(3, blob, {"r": 8}, [1, 2, 3], -4.25)
    assert upd.sha256 == hashlib.sha256(blob).hexdigest()
    assert "bytes" in repr(upd) and "safetensors-bytes" not in repr(upd)
    upd.verify_ack(AdapterAck("w0", 3, upd.sha256, -4.2501), logprob_tolerance=1e-3)
    with pytest.raises(AdapterVerificationError, match="worker w1: loaded adapter v2, expected v3"):
        upd.verify_ack(AdapterAck("w1", 2, upd.sha256, -4.25), 1e-3)
    with pytest.raises(AdapterVerificationError, match="worker w2: adapter v3 checksum"):
        upd.verify_ack(AdapterAck("w2", 3, "0" * 64, -4.25), 1e-3)
    with pytest.raises(AdapterVerificationError, match="worker w3: .* probe logprob"):
        upd.verify_ack(AdapterAck("w3", 3, upd.sha256, -4.5), 1e-3)
    with pytest.raises(ContractError, match="does not match its bytes"):
        AdapterUpdate(3, blob, {}, "0" * 64, (1, 2), -1.0)


def test_ledger_fates():
    assert {f.value for f in SampleFate} == {"trained", "masked", "discarded"}


def test_a_judge_verdict_travels_typed_and_only_on_an_ok_answer_whose_score_it_explains():
    import json

    from repo_ray.types import JudgeCalls, JudgeVerdict

    verdict = JudgeVerdict({"emotional_soothing": 4.0, "sop_compliance": None}, {"emotional_soothing": "warm"}, 8.0)
    calls = JudgeCalls(("rate_limited", "ok"), usage={"total_tokens": 90}, limiter_wait_s=0.2)
    r = SourceResult(8.0, SourceStatus.OK, 0.3, "1/2 items scored, 2 calls", verdict=verdict, calls=calls)
    assert r.verdict.scores["emotional_soothing"] == 4.0 and r.calls.attempts == ("rate_limited", "ok")
    logged = json.loads(r.log_detail())  # the Parquet column: one JSON object at the edge
    assert logged["scores"] == {"emotional_soothing": 4.0, "sop_compliance": None}
    assert logged["attempts"] == ["rate_limited", "ok"] and logged["detail"] == "1/2 items scored, 2 calls"
    assert SourceResult(None, SourceStatus.TIMEOUT, detail="no answer").log_detail() == "no answer"
    with pytest.raises(ContractError, match="verdict"):
        SourceResult(None, SourceStatus.INVALID_OUTPUT, verdict=verdict)
    with pytest.raises(ContractError, match="E_judge"):
        SourceResult(7.0, SourceStatus.OK, verdict=verdict)
    with pytest.raises(ContractError, match="not finite"):
        JudgeVerdict({"x": float("nan")}, {}, 0.0)
