"""The heuristic judge is worth using: on held-out generated preference pairs (seed 60607,
used nowhere else), the rubric item that matches each judge-caught defect scores the chosen
reply above the rejected one in at least 80% of pairs, and scores vary across replies.

An item's score counts by its contribution to E_judge: null (not applicable) is 0."""

from __future__ import annotations

import asyncio
import json
import statistics
from collections import defaultdict

from repo_ray.domain.datagen import preference_rows
from repo_ray.domain.defects import DEFECTS
from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS
from repo_ray.types import SourceStatus
from reward_actors.judge.client import JudgeClient
from reward_actors.judge.prompt import JudgeContext

from .judge_helpers import judge_cfg

HELD_OUT_SEED = 60607
PAIRS_PER_DEFECT = 20
JUDGE_DEFECTS = sorted(d for d, spec in DEFECTS.items() if spec.catcher == "judge")


def test_judge_items_prefer_chosen_over_rejected_per_defect_and_vary(server):
    rows = [r for r in preference_rows(PAIRS_PER_DEFECT * len(DEFECTS), HELD_OUT_SEED, 0.3, 3)
            if r["defect"] in JUDGE_DEFECTS]
    ctxs = [JudgeContext.from_row(r["scenario"], r["context"], r[side], r["sop_stage"])
            for r in rows for side in ("chosen", "rejected")]

    async def run():
        async with JudgeClient(judge_cfg(server.base_url), DEFAULT_JUDGE_WEIGHTS) as judge:
            return await asyncio.gather(*(judge.score(c) for c in ctxs))
    results = asyncio.run(run())
    assert all(r.status is SourceStatus.OK for r in results)

    wins = defaultdict(list)
    for i, row in enumerate(rows):
        item = DEFECTS[row["defect"]].check
        chosen, rejected = (results[2 * i + k].verdict.scores[item] for k in (0, 1))
        wins[row["defect"]].append((chosen or 0.0) > (rejected or 0.0))
    rates = {d: sum(w) / len(w) for d, w in wins.items()}
    assert set(rates) == set(JUDGE_DEFECTS) and all(len(w) == PAIRS_PER_DEFECT for w in wins.values())
    assert min(rates.values()) >= 0.8, rates

    e = [r.score for r in results]
    vectors = {json.dumps(r.verdict.scores, sort_keys=True) for r in results}
    assert statistics.pstdev(e) > 3.0 and len(set(e)) >= 15 and len(vectors) >= 30
