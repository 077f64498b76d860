"""What a language-model customer or business answers in the market, and how it becomes actions.

Core objects:
    MarketAnswer: the pydantic model of one answer: a union of one model per action, told
        apart by the ``action`` field (customers and businesses share it; an action of the
        other role is refused by the platform as ``wrong_role``).
    MarketLLM: the market's ``LLMAdapter``: template variables (the platform's rules, and
        each agent's need, proposals and messages, or menu, inquiries and sales), answers as
        actions, and what agents remember of a step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel

from populace.simulator.actions import ActionBatch
from populace.simulator.llm_adapter import Id, LLMAdapter, Memory

from .actions import ACTIONS, MarketArgs, action_batch
from .catalog import Catalog
from .config import MarketConfig
from .observation import MarketObservation
from .state import MarketState

Text = Annotated[str, Field(min_length=1, max_length=500)]


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DoNothing(_Decision):
    action: Literal["do_nothing"]


class Search(_Decision):
    action: Literal["search"]
    contacts: int = Field(3, ge=1, le=50, description="how many results to ask for proposals")


class Pay(_Decision):
    action: Literal["pay"]
    proposal_id: Id
    price: float = Field(ge=0, description="the proposal's price, which you agree to pay")


class Leave(_Decision):
    action: Literal["leave"]


class Respond(_Decision):
    action: Literal["respond"]
    markup: float = Field(ge=-0.9, le=5.0, description="markup over your list prices")


class Message(_Decision):
    action: Literal["message"]
    to: Id = Field(description="agent id of the receiver")
    content: Text


Decision = Annotated[DoNothing | Search | Pay | Leave | Respond | Message,
                     Field(discriminator="action")]


class MarketAnswer(RootModel[Decision]):
    """One decision of a marketplace customer or business."""


IMPORTANCE = {"pay": 6.0, "leave": 4.0, "search": 2.0, "respond": 2.0, "message": 3.0}


def _money(cents: int) -> str:
    return f"${cents / 100:.2f}"


class MarketLLM(LLMAdapter[MarketObservation, MarketArgs]):
    """What language-model customers and businesses are told, and how their answers become
    market actions.

    Args:
        config: the market's configuration (item types, features, the manipulation pitch).
        catalog: businesses and menus.
        state: the market's state, read when prompts are made (needs, open proposals,
            inboxes); the object the scenario keeps changing in place.
    """

    prompt_dir = Path(__file__).parent / "prompts"

    def __init__(self, config: MarketConfig, catalog: Catalog, state: MarketState) -> None:
        self.config, self.catalog, self.state = config, catalog, state

    def decision_model(self) -> type[BaseModel]:
        """One answer of a language-model customer or business (the same for every market)."""
        return MarketAnswer

    def prompt_context(self, obs: MarketObservation
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Template variables: the rules, and each agent's need and proposals or menu."""
        cfg, cat, state = self.config, self.catalog, self.state
        needs, props = state.needs, state.proposals
        shared = {"platform": "Populace Market", "item_types": cfg.item_types,
                  "features": cfg.features, "results": cfg.results, "ttl": cfg.proposal_ttl}
        out = []
        features = cat.feature_names
        for i, agent in enumerate(obs.agents.tolist()):
            ctx: dict[str, Any] = {"agent_id": agent, "is_business": bool(obs.is_business[i]),
                                   "balance": _money(int(obs.balance[i])),
                                   "messages": state.inboxes.inbox(agent),
                                   "announcements": state.inboxes.announcements(
                                       bool(obs.is_business[i]))}
            if obs.is_business[i]:
                b = int(cat.agent_biz[agent])
                rows = np.flatnonzero(cat.menu_biz == b)
                ctx.update({
                    "menu": [{"item": cfg.item_types[int(cat.menu_type[r])],
                              "list_price": _money(int(cat.menu_base[r])),
                              "features": features(cat.menu_feat[r:r + 1])[0] or "none"}
                             for r in rows.tolist()],
                    "rating": float(cat.rating[b]), "markup": float(obs.markup[i]),
                    "inquiries": int(obs.inquiries[i]), "sold": int(obs.sold[i]),
                    "capacity": int(obs.capacity[i]),
                    "manipulative": bool(cat.manipulative[b])})
            else:
                c = int(cat.agent_cust[agent])
                need = None
                if obs.has_need[i]:
                    need = {"item": cfg.item_types[int(needs.type[c])],
                            "features": features(needs.feat[c:c + 1])[0] or "none",
                            "budget": _money(int(obs.budget[i])),
                            "value": _money(int(obs.value[i]))}
                proposals = []
                for j, pid in enumerate(obs.proposal_id[i].tolist()):
                    if pid < 0:
                        break
                    row = int(props.row[np.searchsorted(props.id, pid)])
                    biz = int(cat.menu_biz[row])
                    proposals.append({
                        "proposal_id": pid, "business": int(cat.biz_agent[biz]),
                        "price": _money(int(obs.price[i, j])),
                        "features": features(cat.menu_feat[row:row + 1])[0] or "none",
                        "match": float(obs.match[i, j]), "rating": float(obs.rating[i, j]),
                        "pitch": cfg.manipulation_pitch if obs.manipulative[i, j] else None})
                ctx.update({"need": need, "searched": bool(obs.searched[i]),
                            "waited": int(obs.waited[i]), "proposals": proposals})
            out.append(ctx)
        return shared, out

    def decisions_to_actions(self, obs: MarketObservation, decisions: list[Any],
                             fallback: str) -> ActionBatch[MarketArgs]:
        """Validated answers as a market batch; ``None`` entries take ``fallback``."""
        if fallback not in ACTIONS:
            raise ValueError(f"fallback {fallback!r} is not a market action "
                             f"({', '.join(ACTIONS)})")
        n = len(obs.agents)
        codes = np.full(n, ACTIONS.index(fallback), dtype=np.int16)
        proposal = np.full(n, -1, dtype=np.int64)
        contacts = np.full(n, -1, dtype=np.int64)
        price = np.full(n, -1, dtype=np.int64)
        target = np.full(n, -1, dtype=np.int64)
        markup = np.full(n, np.nan)
        content = np.full(n, None, dtype=object)
        for i, answer in enumerate(decisions):
            if answer is None:
                continue
            d = getattr(answer, "root", answer)
            codes[i] = ACTIONS.index(d.action)
            if isinstance(d, Search):
                contacts[i] = d.contacts
            elif isinstance(d, Pay):
                proposal[i] = d.proposal_id
                price[i] = int(round(d.price * 100))
            elif isinstance(d, Respond):
                markup[i] = d.markup
            elif isinstance(d, Message):
                target[i] = d.to
                content[i] = d.content
        return action_batch(obs.agents, codes, MarketArgs(
            proposal_id=proposal, contacts=contacts, markup=markup, price=price,
            target_id=target, content=content))

    def memory_query(self, context: dict[str, Any]) -> str:
        """Memories are retrieved for the agent's need (customers) or menu (businesses)."""
        if context["is_business"]:
            return " ".join(m["item"] for m in context["menu"])
        need = context.get("need")
        return f"{need['item']} {need['features']}" if need else "shopping"

    def memories(self, obs: MarketObservation, contexts: list[dict[str, Any]],
                 actions: ActionBatch[MarketArgs]) -> list[Memory]:
        """Each agent remembers what it chose (before the platform applies it)."""
        out: list[Memory] = []
        a = actions.args
        for i, code in enumerate(actions.action.tolist()):
            name = ACTIONS[code]
            if name == "do_nothing":
                continue
            if name == "pay":
                text = f"I paid proposal {a.proposal_id[i]}."
            elif name == "respond":
                text = f"I answered inquiries at a markup of {a.markup[i]:+.2f}."
            elif name == "message":
                text = f"I wrote to agent {a.target_id[i]}: {a.content[i]}"
            else:
                text = f"I chose to {name}."
            out.append(Memory(i, "action", text, IMPORTANCE[name]))
        return out
