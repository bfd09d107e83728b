"""Reward sources for REPO: RF rules, the LLM judge pool, the reward model and the RewardPool."""
