"""repo-ray: REPO (Reward-Enhanced Policy Optimization) as a Ray actor/learner RL service.

The Python API (repo_ray/api.py) is exported lazily, so `import repo_ray` stays light:
`repo_ray.load_config`, `train`, `evaluate`, `score`, `compare` and their result types.
"""

__version__ = "0.1.0"

_API = ("load_config", "train", "evaluate", "score", "compare",
        "TrainResult", "EvalResult", "ScoreResult", "CompareResult")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from repo_ray import api  # on first use only: it pulls in the config tree (and, when called, more)

        return getattr(api, name)
    raise AttributeError(f"module 'repo_ray' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])
