"""The optional piece of a scenario that lets language models decide for its agents.

Core objects:
    LLMAdapter: what the LLM policy needs from a scenario: the decision model a model's answer
        must fit, the prompt templates and their variables, and how decisions become actions
        and memories. A scenario that has one returns it from ``Scenario.llm_adapter``.
    Memory: one thing an LLM agent remembers of a step.
    Id: the type of an id in a decision model (bounded so that it fits the engine's arrays).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, Literal, NamedTuple

from pydantic import BaseModel, Field

from .actions import ActionBatch, ArgsT
from .step import ObsT

MAX_ID = 2**53
"""The largest id a model's answer may name: ids are int64 in the engine, and JSON numbers
are exact integers up to 2**53."""

Id = Annotated[int, Field(ge=0, le=MAX_ID)]
"""An agent, post, proposal... id in a decision model: an answer naming a larger one is
invalid (repaired or falling back), never an overflow in the scenario's arrays."""


class Memory(NamedTuple):
    """One memory of a step: the row of the agent in the observation, its kind, its text and
    how important it is (0-10; the LLM policy may ask the model to rate it instead)."""

    row: int
    kind: Literal["observation", "action", "message"]
    text: str
    importance: float


class LLMAdapter(ABC, Generic[ObsT, ArgsT]):
    """What language-model agents need from a scenario (see "Language-model agents" in
    docs/scenarios.md).

    The LLM policy renders, for a batch of agents at once, the system template with the shared
    variables and the agent template with each agent's variables; sends the requests; validates
    each answer against ``decision_model`` (repairing or falling back); and turns the decisions
    into the scenario's actions.
    """

    prompt_dir: ClassVar[Path]
    """Folder of the default Jinja2 templates: ``system.j2`` (shared by every agent, sent
    first so servers cache it) and ``agent.j2`` (one agent's profile and observation);
    ``<role>.system.j2`` / ``<role>.agent.j2`` override them for a role."""

    @abstractmethod
    def decision_model(self) -> type[BaseModel]:
        """The pydantic model one answer must validate against (its JSON schema is sent to
        servers that constrain their output)."""

    @abstractmethod
    def prompt_context(self, obs: ObsT) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Template variables: those shared by the batch, and one dict per agent of ``obs``."""

    @abstractmethod
    def decisions_to_actions(self, obs: ObsT, decisions: list[Any],
                             fallback: str) -> ActionBatch[ArgsT]:
        """Turn validated decisions (instances of ``decision_model``; None where the model gave
        no valid answer: take the action named ``fallback``) into a batch in ``obs`` order."""

    def memory_query(self, context: dict[str, Any]) -> str:
        """The text an agent's memories are retrieved for (default: none, no retrieval)."""
        return ""

    def memories(self, obs: ObsT, contexts: list[dict[str, Any]],
                 actions: ActionBatch[ArgsT]) -> list[Memory]:
        """What the agents of ``obs`` remember of this step (default: nothing)."""
        return []
