"""RF rule throughput on one core: responses/s for all rules together (E_func with the default
weights) and per rule, over a realistic mix of expert replies and defective ones.

    .venv/bin/python bench/rules.py [--pairs 800] [--repeats 5]

The mix is `preference_rows` (every defect equally often, half Chinese, up to three room
types): each pair gives its chosen (expert) and its rejected reply in their shared context.
Rates are responses per second of this process's CPU time (time.process_time, pinned to one
core), the best of --repeats passes: on a shared machine, wall time also counts the time other
processes hold the core. Target: >= 5,000 responses/s for all rules together.
"""

from __future__ import annotations

import argparse
import os
import time

from emit import emit  # bench/emit.py (this script's directory is on sys.path)

from repo_ray.domain.datagen import preference_rows
from repo_ray.domain.rubric import DEFAULT_RULE_WEIGHTS
from repo_ray.domain.scenario import Scenario
from reward_actors.rules import RULE_FUNCS, RuleContext, e_func


def best_rate(fn, items, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for item in items:
            fn(*item)
        best = min(best, time.process_time() - t0)
    return len(items) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=800)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, stated not assumed

    rows = preference_rows(args.pairs, args.seed, zh_fraction=0.5, max_room_types=3)
    scenarios = [Scenario.from_row(r["scenario"]) for r in rows]
    contexts = [RuleContext.from_scenario(s, r["context"]) for s, r in zip(scenarios, rows)]
    items = [(text, ctx) for r, ctx in zip(rows, contexts) for text in (r["chosen"], r["rejected"])]
    weights = dict(DEFAULT_RULE_WEIGHTS)
    mean_chars = sum(len(t) for t, _ in items) / len(items)
    print(f"{len(items)} responses ({args.pairs} pairs, half zh, mean {mean_chars:.0f} chars), one core, "
          f"best of {args.repeats}")

    all_rules = best_rate(lambda t, c: e_func(t, c, weights), items, args.repeats)
    with_ctx = best_rate(
        lambda t, s, r: e_func(t, RuleContext.from_scenario(s, r["context"]), weights),
        [(t, s, r) for s, r in zip(scenarios, rows) for t in (r["chosen"], r["rejected"])], args.repeats,
    )
    print(f"  all rules (E_func)                   {all_rules:10,.0f} responses/s  "
          f"{'OK' if all_rules >= 5000 else 'BELOW'} target 5,000")
    print(f"  all rules + building the context     {with_ctx:10,.0f} responses/s")
    print("  per rule:")
    per_rule = {}
    for name, fn in RULE_FUNCS.items():
        rate = per_rule[name] = best_rate(fn, items, args.repeats)
        print(f"    {name:24s} {rate:12,.0f} responses/s  {1e6 / rate:7.1f} us")
    emit("rules", {"responses": len(items), "all_rules_per_s": all_rules, "with_context_per_s": with_ctx,
                   "target_per_s": 5000, "per_rule_per_s": per_rule})


if __name__ == "__main__":
    main()
