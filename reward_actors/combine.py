"""How the answers of the three reward sources become one `RewardResult` (DESIGN.md §2).

Pure: the RewardPool actor gathers `SourceResult`s and calls `combine_sources`. An RM
failure always masks the sample. A judge or rule failure masks it under
`reward.failure_policy: mask`; under `partial` the sample is enhanced from the sources
that answered and the reason names the missing one. A missing score is never a 0.
"""

from __future__ import annotations

from collections.abc import Mapping

from repo_ray.algos.reward_enhance import enhance_reward, enhancement
from repo_ray.config import RewardConfig
from repo_ray.types import SOURCE_JUDGE, SOURCE_RM, SOURCE_RULES, RewardResult, SourceResult, SourceStatus

ENHANCERS = (SOURCE_JUDGE, SOURCE_RULES)


def _failure(name: str, src: SourceResult | None) -> str:
    if src is None:
        return f"{name} missing"
    return f"{name} {src.status.value}" + (f": {src.detail}" if src.detail else "")


def combine_sources(sample_id: str, sources: Mapping[str, SourceResult], cfg: RewardConfig) -> RewardResult:
    """One RewardResult from the answers of the enabled sources (`cfg.sources`).

    E_judge comes from the judge, E_func from the rules; E_enh = clip(E_judge + E_func,
    -n, n) over those that answered; R_total = R_model + |R_model| * E_enh / n. With no
    enhancing source enabled (the RM-only ablation), E_enh is None and R_total = R_model.
    """
    sources = dict(sources)
    rm = sources.get(SOURCE_RM)
    e_judge = sources[SOURCE_JUDGE].score if SOURCE_JUDGE in sources and sources[SOURCE_JUDGE].ok else None
    e_func = sources[SOURCE_RULES].score if SOURCE_RULES in sources and sources[SOURCE_RULES].ok else None
    r_model = rm.score if rm is not None and rm.ok else None

    def masked(reason: str) -> RewardResult:
        return RewardResult(sample_id, r_model, e_judge, e_func, None, None, sources, masked=True, reason=reason)

    if r_model is None:
        return masked(_failure(SOURCE_RM, rm))
    enabled = [s for s in ENHANCERS if s in cfg.sources]
    failed = [s for s in enabled if s not in sources or not sources[s].ok]
    if failed and cfg.failure_policy == "mask":
        return masked("; ".join(_failure(s, sources.get(s)) for s in failed))
    answered = [s for s in enabled if s not in failed]
    if not answered:
        reason = "" if not failed else "partial: " + "; ".join(_failure(s, sources.get(s)) for s in failed)
        return RewardResult(sample_id, r_model, e_judge, e_func, None, r_model, sources, masked=False, reason=reason)
    ej = e_judge if SOURCE_JUDGE in answered else 0.0  # absent from the sum, recorded as None
    ef = e_func if SOURCE_RULES in answered else 0.0
    e_enh = float(enhancement(ej, ef, cfg.n))
    r_total = float(enhance_reward(r_model, ej, ef, cfg.n))
    reason = "partial: " + "; ".join(_failure(s, sources.get(s)) for s in failed) if failed else ""
    return RewardResult(sample_id, r_model, e_judge, e_func, e_enh, r_total, sources, masked=False, reason=reason)


def failed_status(result: RewardResult) -> dict[str, SourceStatus]:
    """Source -> status for every source that did not answer ok (for metrics)."""
    return {name: src.status for name, src in result.sources.items() if not src.ok}
