"""Prefect flows that orchestrate the core in `rollout`, and the `rollout` command that starts them."""
