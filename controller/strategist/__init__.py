"""Strategists turn a goal in plain words into a tuning spec: the built-in workload catalog
(offline), or an LLM over any OpenAI-compatible endpoint when one is configured."""

from __future__ import annotations


def choose(goal: str, facts: dict | None = None):
    """The plan for a goal: the built-in catalog (the LLM strategist plugs in here when configured)."""
    from controller.strategist.builtin import plan

    return plan(goal, facts)
