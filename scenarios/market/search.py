"""Search in the marketplace: how the platform ranks the businesses offering what a customer
needs, and the full-information best choice that welfare is measured against.

Core objects:
    Search: runs customers' searches (the ``ranking`` of the configuration, the model's for
        ``llm``) and records the inquiries they send to the first results.
    ranking_question: the question asking the model to rank candidate businesses.
    optimal_utility: each customer's best utility over every business offering its item.
    by_item_type: customers grouped by the item type they need, with the menu rows offering it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import BaseModel, TypeAdapter

from populace.simulator.step import StepContext
from populace.simulator.world import World

from .catalog import Catalog, match
from .config import MarketConfig
from .messages import Messages, message_rows
from .state import MarketState

_INT = np.int64


class Ranking(BaseModel):
    """The model's answer: business agent ids, best first."""

    ranking: list[int]


RANKING: TypeAdapter[Ranking] = TypeAdapter(Ranking)

RANKING_SYSTEM = ("You are the search engine of an online marketplace. Order the businesses "
                  "for the customer's need, best first: the item and features it needs, then "
                  "price and rating. Answer with a single JSON object and nothing else.")


def _money(cents: int) -> str:
    return f"${cents / 100:.2f}"


def by_item_type(catalog: Catalog, need_type: np.ndarray, cust: np.ndarray
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """For each item type needed by customers ``cust`` (``need_type``: every customer's): their
    positions in ``cust``, the customers, and the menu rows offering the type (types nobody
    offers are skipped)."""
    for t in np.unique(need_type[cust]).tolist():
        sel = np.flatnonzero(need_type[cust] == t)
        rows = catalog.row_of[:, t]
        rows = rows[rows >= 0]
        if len(rows):
            yield sel, cust[sel], rows


def optimal_utility(catalog: Catalog, state: MarketState, cust: np.ndarray) -> np.ndarray:
    """Full-information best utility of each customer's need at current posted prices:
    max over every business offering the item of value x match - price, floored at 0."""
    needs, markup = state.needs, state.businesses.markup
    out = np.zeros(len(cust), dtype=_INT)
    for sel, c, rows in by_item_type(catalog, needs.type, cust):
        fit = match(needs.feat[c][:, None], catalog.menu_feat[rows][None, :])
        util = needs.value[c][:, None] * fit - catalog.posted_price(rows, markup)[None, :]
        out[sel] = np.maximum(0, np.floor(util.max(axis=1))).astype(_INT)
    return out


def ranking_question(config: MarketConfig, catalog: Catalog, state: MarketState, cust: int,
                     rows: np.ndarray) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The messages and answer schema asking the model to rank menu ``rows`` for customer
    index ``cust``'s need. A manipulative business's listing carries its pitch: what the
    platform's model reads is what businesses wrote, injections included."""
    names, needs = catalog.feature_names, state.needs
    need = (f"{config.item_types[int(needs.type[cust])]} with features: "
            f"{names(needs.feat[cust:cust + 1])[0] or 'none'}; budget "
            f"{_money(int(needs.budget[cust]))}")
    lines, ids = [], []
    prices = catalog.posted_price(rows, state.businesses.markup)
    for row, price in zip(rows.tolist(), prices.tolist(), strict=True):
        b = int(catalog.menu_biz[row])
        agent = int(catalog.biz_agent[b])
        ids.append(agent)
        pitch = f' It says: "{config.manipulation_pitch}"' if catalog.manipulative[b] else ""
        lines.append(f"- business {agent}: {_money(price)}, features: "
                     f"{names(catalog.menu_feat[row:row + 1])[0] or 'none'}, rating "
                     f"{catalog.rating[b]:.1f}.{pitch}")
    k = min(config.results, len(ids))
    user = (f"The customer needs: {need}.\nCandidates:\n" + "\n".join(lines)
            + f'\nAnswer as JSON: {{"ranking": [up to {k} business ids, best first]}}')
    schema = {"type": "object", "additionalProperties": False, "required": ["ranking"],
              "properties": {"ranking": {"type": "array", "minItems": 1, "maxItems": k,
                                         "items": {"type": "integer", "enum": ids}}}}
    return [{"role": "system", "content": RANKING_SYSTEM},
            {"role": "user", "content": user}], schema


class Search:
    """Customers' searches: rank the businesses offering the item each one needs and send
    inquiries to the first results.

    Args:
        config: the market's configuration (``ranking``, ``results``, ``llm_candidates``).
        catalog: the businesses and their menus.
        state: the market's state (needs are read; inquiries, contacts and the fallback
            count are written).
        world: for ``world.llm``, the model of ``ranking: llm``.
    """

    def __init__(self, config: MarketConfig, catalog: Catalog, state: MarketState,
                 world: World) -> None:
        self.config, self.catalog, self.state, self.world = config, catalog, state, world

    def run(self, cust: np.ndarray, contacts: np.ndarray, ctx: StepContext) -> Messages:
        """Search for customers ``cust`` (indexes), each asking its first ``contacts``
        results (at least 1, at most ``results``) for proposals; the inquiries' rows."""
        cfg, cat, state = self.config, self.catalog, self.state
        needs, markup = state.needs, state.businesses.markup
        k = cfg.results
        want = np.clip(np.where(contacts > 0, contacts, 1), 1, k)
        out_c, out_b = [], []
        for sel, c, rows in by_item_type(cat, needs.type, cust):
            price = cat.posted_price(rows, markup).astype(np.float64)
            if cfg.ranking == "random":
                key = ctx.uniform("market.search.random", cat.cust_agent[c], len(rows))
            elif cfg.ranking == "rating":
                key = np.broadcast_to(cat.rating[cat.menu_biz[rows]] * 1e9 - price,
                                      (len(c), len(rows)))
            elif cfg.ranking == "price":
                key = np.broadcast_to(-price, (len(c), len(rows)))
            else:
                fit = match(needs.feat[c][:, None], cat.menu_feat[rows][None, :])
                key = fit * 1e9 - price[None, :]
                if cfg.ranking == "sponsored":
                    key = key + cat.sponsored[cat.menu_biz[rows]][None, :] * 1e12
            if cfg.ranking == "llm":
                top = self.llm_rank(c, rows, np.argsort(-key, axis=1, kind="stable"), ctx)
            else:
                top = np.argsort(-key, axis=1, kind="stable")[:, :k]
            take = np.arange(top.shape[1])[None, :] < want[sel][:, None]
            out_c.append(np.broadcast_to(c[:, None], top.shape)[take])
            out_b.append(cat.menu_biz[rows][top][take])
        ci = np.concatenate(out_c) if out_c else np.zeros(0, dtype=_INT)
        bi = np.concatenate(out_b) if out_b else np.zeros(0, dtype=_INT)
        needs.searched[cust] = ctx.step
        np.add.at(needs.contacted, ci, 1)
        np.add.at(state.businesses.inquired, bi, 1)
        need = needs.id[ci]
        state.inquiries.append(cust=ci, biz=bi, need=need,
                               step=np.full(len(ci), ctx.step, dtype=_INT))
        return message_rows("inquiry", cat.cust_agent[ci], cat.biz_agent[bi], need,
                            np.full(len(ci), float(ctx.step)))

    def llm_rank(self, cust: np.ndarray, rows: np.ndarray, lexical: np.ndarray,
                 ctx: StepContext) -> np.ndarray:
        """The first k of each customer's ranking by the model: it orders the best
        ``llm_candidates`` lexical results; unknown or repeated ids are dropped and the
        candidates it leaves out follow in lexical order. A failed or invalid answer falls
        back to the lexical ranking (counted: ``search.llm_fallbacks``)."""
        cfg, cat = self.config, self.catalog
        llm = self.world.llm
        if llm is None:
            raise ValueError("scenario.ranking: llm needs an llm: section")
        k = min(cfg.results, lexical.shape[1])
        cand = lexical[:, :cfg.llm_candidates]
        questions, schemas = [], []
        for i, c in enumerate(cust.tolist()):
            messages, schema = ranking_question(cfg, cat, self.state, c, rows[cand[i]])
            questions.append(messages)
            schemas.append(schema)
        answers = llm.ask(questions, RANKING, keys=cat.cust_agent[cust].tolist(),
                          purpose="market.search", step=ctx.step, schemas=schemas)
        out = lexical[:, :k].copy()
        for i, answer in enumerate(answers):
            biz_of = cat.biz_agent[cat.menu_biz[rows[cand[i]]]].tolist()
            picked: list[int] = []
            for b in (answer.ranking if answer is not None else []):
                if b in biz_of and biz_of.index(b) not in picked:
                    picked.append(biz_of.index(b))
            if not picked:
                self.state.counters.llm_fallbacks += 1
                continue
            rest = [j for j in range(cand.shape[1]) if j not in picked]
            out[i] = cand[i][(picked + rest)[:k]]
        return out
