"""repo-ray: REPO (Reward-Enhanced Policy Optimization) as a Ray actor/learner RL service."""

__version__ = "0.1.0"
