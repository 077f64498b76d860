"""Which indexes a completed run gets for its readers (the web service and monitor, the
loaders): one list, used by the engine when a run completes and by ``benchmarks/webui.py``.

Core objects:
    reader_indexes: the ``ReadIndex`` es of a run of a scenario, over the tables it has.

Made at the end of a run, not while it writes: docs/benchmarks.md ("Web service reads at 1M
agents") measures both.
"""

from __future__ import annotations

from collections.abc import Collection

from populace.storage.read_indexes import ReadIndex

from .llm.tables import STEP_TABLES as LLM_STEP_TABLES
from .scenario import Scenario


def reader_indexes(scenario: type[Scenario], tables: Collection[str]) -> list[ReadIndex]:
    """Per agent (the action table, interview answers, memories, model calls), the action mix,
    and both ends of the scenario's network; only over ``tables`` that exist. The key column
    comes first: SQLite answers ``source IN (..) OR target IN (..)`` with one index per side
    only then."""
    per_agent = (scenario.action_table, "interview_answers", *LLM_STEP_TABLES)
    specs = [ReadIndex(t, ("agent_id", "run_id")) for t in per_agent if t in tables]
    specs.append(ReadIndex(scenario.action_table, ("run_id", "action", "step")))
    if scenario.graph is not None:
        graph = scenario.graph
        specs += [ReadIndex(graph.table, (graph.source, "run_id")),
                  ReadIndex(graph.table, (graph.target, "run_id"))]
    return specs


__all__ = ["reader_indexes"]
