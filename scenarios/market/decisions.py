"""What a language-model customer or business answers in the market, and how it becomes actions.

Core objects:
    decision_model: the pydantic model of one answer: a union of one model per action, told
        apart by the ``action`` field (customers and businesses share it; an action of the
        other role is refused by the scenario as ``wrong_role``).
    prompt_context: template variables: the platform's rules, and each agent's need,
        proposals and messages (customers) or menu, inquiries and sales (businesses).
    decisions_to_actions: validated answers (or a fallback) as an ``ActionBatch``.
    memories: what LLM agents remember of a step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel

from populace.simulator.actions import ActionBatch

from .actions import ACTIONS, action_batch

if TYPE_CHECKING:
    from .scenario import MarketObservation, MarketScenario

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
    proposal_id: int = Field(ge=0)
    price: float = Field(ge=0, description="the proposal's price, which you agree to pay")


class Leave(_Decision):
    action: Literal["leave"]


class Respond(_Decision):
    action: Literal["respond"]
    markup: float = Field(ge=-0.9, le=5.0, description="markup over your list prices")


class Message(_Decision):
    action: Literal["message"]
    to: int = Field(ge=0, description="agent id of the receiver")
    content: Text


Decision = Annotated[DoNothing | Search | Pay | Leave | Respond | Message,
                     Field(discriminator="action")]


class MarketAnswer(RootModel[Decision]):
    """One decision of a marketplace customer or business."""


def decision_model() -> type[BaseModel]:
    """The answer schema (the same for every market)."""
    return MarketAnswer


def _money(cents: int) -> str:
    return f"${cents / 100:.2f}"


def prompt_context(scenario: MarketScenario, obs: MarketObservation
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Shared and per-agent template variables for a batch of observations."""
    cfg = scenario.config
    shared = {"platform": "Populace Market", "item_types": cfg.item_types,
              "features": cfg.features, "results": cfg.results, "ttl": cfg.proposal_ttl}
    out = []
    features = scenario._feature_names
    for i, agent in enumerate(obs.agents.tolist()):
        ctx: dict[str, Any] = {"agent_id": agent, "is_business": bool(obs.is_business[i]),
                               "balance": _money(int(obs.balance[i])),
                               "messages": scenario.inbox(agent)}
        if obs.is_business[i]:
            b = int(scenario.agent_biz[agent])
            rows = np.flatnonzero(scenario.menu_biz == b)
            ctx.update({
                "menu": [{"item": cfg.item_types[int(scenario.menu_type[r])],
                          "list_price": _money(int(scenario.menu_base[r])),
                          "features": features(scenario.menu_feat[r:r + 1])[0] or "none"}
                         for r in rows.tolist()],
                "rating": float(scenario.rating[b]), "markup": float(obs.markup[i]),
                "inquiries": int(obs.inquiries[i]), "sold": int(obs.sold[i]),
                "capacity": int(obs.capacity[i]),
                "manipulative": bool(scenario.manipulative[b])})
        else:
            c = int(scenario.agent_cust[agent])
            need = None
            if obs.has_need[i]:
                need = {"item": cfg.item_types[int(scenario.need_type[c])],
                        "features": features(scenario.need_feat[c:c + 1])[0] or "none",
                        "budget": _money(int(obs.budget[i])),
                        "value": _money(int(obs.value[i]))}
            proposals = []
            for j, pid in enumerate(obs.proposal_id[i].tolist()):
                if pid < 0:
                    break
                row = int(scenario.prop_row[np.searchsorted(scenario.prop_id, pid)])
                biz = int(scenario.menu_biz[row])
                proposals.append({
                    "proposal_id": pid, "business": int(scenario.biz_agent[biz]),
                    "price": _money(int(obs.price[i, j])),
                    "features": features(scenario.menu_feat[row:row + 1])[0] or "none",
                    "match": float(obs.match[i, j]), "rating": float(obs.rating[i, j]),
                    "pitch": cfg.manipulation_pitch if obs.manipulative[i, j] else None})
            ctx.update({"need": need, "searched": bool(obs.searched[i]),
                        "waited": int(obs.waited[i]), "proposals": proposals})
        out.append(ctx)
    return shared, out


def decisions_to_actions(obs: MarketObservation, decisions: list[BaseModel | None],
                         fallback: str) -> ActionBatch:
    """Validated answers as a market ``ActionBatch``; ``None`` entries take ``fallback``."""
    if fallback not in ACTIONS:
        raise ValueError(f"fallback {fallback!r} is not a market action ({', '.join(ACTIONS)})")
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
    return action_batch(obs.agents, codes, proposal_id=proposal, contacts=contacts,
                        markup=markup, price=price, target_id=target, content=content)


IMPORTANCE = {"pay": 6.0, "leave": 4.0, "search": 2.0, "respond": 2.0, "message": 3.0}


def memory_query(context: dict[str, Any]) -> str:
    """Memories are retrieved for the agent's need (customers) or menu (businesses)."""
    if context["is_business"]:
        return " ".join(m["item"] for m in context["menu"])
    need = context.get("need")
    return f"{need['item']} {need['features']}" if need else "shopping"


def memories(obs: MarketObservation, contexts: list[dict[str, Any]], actions: ActionBatch
             ) -> list[tuple[int, str, str, float]]:
    """Each agent remembers what it chose (before the platform applies it)."""
    out: list[tuple[int, str, str, float]] = []
    a = actions.args
    for i, code in enumerate(actions.action.tolist()):
        name = ACTIONS[code]
        if name == "do_nothing":
            continue
        if name == "pay":
            text = f"I paid proposal {a['proposal_id'][i]}."
        elif name == "respond":
            text = f"I answered inquiries at a markup of {a['markup'][i]:+.2f}."
        elif name == "message":
            text = f"I wrote to agent {a['target_id'][i]}: {a['content'][i]}"
        else:
            text = f"I chose to {name}."
        out.append((i, "action", text, IMPORTANCE[name]))
    return out


RANKING_SYSTEM = ("You are the search engine of an online marketplace. Order the businesses "
                  "for the customer's need, best first: the item and features it needs, then "
                  "price and rating. Answer with a single JSON object and nothing else.")


def ranking_question(scenario: MarketScenario, cust: int, rows: np.ndarray
                     ) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The messages and answer schema asking the model to rank menu ``rows`` for customer
    index ``cust``'s need. A manipulative business's listing carries its pitch: what the
    platform's model reads is what businesses wrote, injections included."""
    cfg = scenario.config
    names = scenario._feature_names
    need = (f"{cfg.item_types[int(scenario.need_type[cust])]} with features: "
            f"{names(scenario.need_feat[cust:cust + 1])[0] or 'none'}; budget "
            f"{_money(int(scenario.need_budget[cust]))}")
    lines, ids = [], []
    prices = scenario.posted_price(rows)
    for row, price in zip(rows.tolist(), prices.tolist(), strict=True):
        b = int(scenario.menu_biz[row])
        agent = int(scenario.biz_agent[b])
        ids.append(agent)
        pitch = f' It says: "{cfg.manipulation_pitch}"' if scenario.manipulative[b] else ""
        lines.append(f"- business {agent}: {_money(price)}, features: "
                     f"{names(scenario.menu_feat[row:row + 1])[0] or 'none'}, rating "
                     f"{scenario.rating[b]:.1f}.{pitch}")
    k = min(cfg.results, len(ids))
    user = (f"The customer needs: {need}.\nCandidates:\n" + "\n".join(lines)
            + f'\nAnswer as JSON: {{"ranking": [up to {k} business ids, best first]}}')
    schema = {"type": "object", "additionalProperties": False, "required": ["ranking"],
              "properties": {"ranking": {"type": "array", "minItems": 1, "maxItems": k,
                                         "items": {"type": "integer", "enum": ids}}}}
    return [{"role": "system", "content": RANKING_SYSTEM},
            {"role": "user", "content": user}], schema
