"""The trajectory log row (trajectories.parquet) says whether a reply was cut at the token
budget, so no truncation is silent in a run's outputs."""

import pyarrow as pa

from repo_ray.pipeline.loop import TRAJECTORY_LOG_SCHEMA, trajectory_row
from repo_ray.types import Message, RewardResult, Role, SourceResult, SourceStatus, Trajectory


def test_the_trajectory_row_carries_the_truncated_flag_through_its_parquet_schema():
    rows = []
    for cut in (False, True):
        t = Trajectory(sample_id=f"s{cut:d}", scenario_id="c", turn_index=0, messages=[Message(Role.SYSTEM, "facts")],
                       response_text="能否把豪华大床房调整到", prompt_token_ids=[1, 2], response_token_ids=[3, 4],
                       response_logprobs=[-0.5, -0.5], response_mask=[1, 1], sop_stage="ask", adapter_version=0,
                       truncated=cut)
        r = RewardResult(t.sample_id, 0.1, None, -30.0, -30.0, 0.07,
                         {"rules": SourceResult(-30.0, SourceStatus.OK, detail="truncated")}, masked=False)
        rows.append(trajectory_row(t, r, "trained", step=1, role="policy"))
    assert set(rows[0]) == set(TRAJECTORY_LOG_SCHEMA.names)
    table = pa.Table.from_pylist(rows, schema=TRAJECTORY_LOG_SCHEMA)
    assert table.column("truncated").to_pylist() == [False, True]
