"""The Network page: a sampled subgraph of the run's network (around an agent or a seeded
sample of agents), laid out with networkx and drawn with Altair, coloured by an attribute."""

from __future__ import annotations

from typing import Any

import altair as alt
import networkx as nx
import pandas as pd
import streamlit as st

from populace.simulator import get_scenario
from populace.webui.monitor.common import current_run, run_caption
from populace.webui.queries import NotFound

MAX_SHOWN = 1000  # the most nodes laid out (a spring layout of more takes seconds)
NO_COLOUR = "(none)"


def layout(graph: dict[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Node and edge tables with positions from a seeded spring layout."""
    g = nx.Graph()
    g.add_nodes_from(n["id"] for n in graph["nodes"])
    g.add_edges_from((e["source"], e["target"]) for e in graph["edges"])
    pos = nx.spring_layout(g, seed=seed) if len(g) else {}
    nodes = pd.DataFrame({
        "agent": [n["id"] for n in graph["nodes"]],
        "value": [n["value"] for n in graph["nodes"]],
        "degree": [g.degree(n["id"]) for n in graph["nodes"]],
        "x": [float(pos[n["id"]][0]) for n in graph["nodes"]],
        "y": [float(pos[n["id"]][1]) for n in graph["nodes"]]})
    edges = pd.DataFrame({
        "source": [e["source"] for e in graph["edges"]],
        "target": [e["target"] for e in graph["edges"]],
        "weight": [e["weight"] for e in graph["edges"]],
        "x": [float(pos[e["source"]][0]) for e in graph["edges"]],
        "y": [float(pos[e["source"]][1]) for e in graph["edges"]],
        "x2": [float(pos[e["target"]][0]) for e in graph["edges"]],
        "y2": [float(pos[e["target"]][1]) for e in graph["edges"]]})
    return nodes, edges


def chart(nodes: pd.DataFrame, edges: pd.DataFrame, colour: str | None) -> alt.LayerChart:
    """Edges as lines under nodes as dots (coloured by ``colour``'s values)."""
    bare = alt.Axis(labels=False, ticks=False, grid=False, title=None, domain=False)
    fit = alt.Scale(zero=False)  # the layout's own extent, not stretched to include 0
    lines = alt.Chart(edges).mark_rule(opacity=0.25).encode(
        x=alt.X("x:Q", axis=bare, scale=fit), y=alt.Y("y:Q", axis=bare, scale=fit),
        x2="x2:Q", y2="y2:Q")
    numeric = colour is not None and pd.api.types.is_numeric_dtype(nodes["value"])
    colour_by: Any = alt.value("#4c78a8") if colour is None else alt.Color(
        f"value:{'Q' if numeric else 'N'}", title=colour,
        scale=alt.Scale(scheme="viridis" if numeric else "tableau10"))
    dots = alt.Chart(nodes).mark_circle(size=60, opacity=0.9).encode(
        x=alt.X("x:Q", axis=bare, scale=fit), y=alt.Y("y:Q", axis=bare, scale=fit),
        color=colour_by,
        tooltip=["agent", "value", "degree"])
    return alt.layer(lines, dots).properties(height=600)


def render() -> None:
    """Draw the page."""
    q = current_run()
    st.title("Network")
    run_caption(q)
    n_agents = int(q.info["n_agents"] or 0)
    if n_agents == 0:
        st.info(f"Run {q.id} has no agents recorded yet.")
        return
    if get_scenario(str(q.info["scenario"])).graph is None:
        st.info(f"Run {q.id}'s scenario ({q.info['scenario']}) records no network: there is "
                "no graph to show.")
        return
    cols = st.columns(5)
    colour = cols[0].selectbox("Colour by", [NO_COLOUR, *q.attribute_names()],
                               key=f"network_colour_{q.id}")
    center = cols[1].number_input("Around agent (empty: a sample)", min_value=0,
                                  max_value=n_agents - 1, value=None, step=1,
                                  key=f"network_center_{q.id}")
    hops = cols[2].slider("Hops", 1, 3, 1, key="network_hops")
    max_nodes = cols[3].slider("Most nodes", 10, MAX_SHOWN, min(300, MAX_SHOWN),
                               key="network_nodes")
    seed = cols[4].number_input("Sample seed", min_value=0, value=0, step=1, key="network_seed")
    chosen = None if colour == NO_COLOUR else str(colour)
    try:
        graph = q.graph(center=None if center is None else int(center), hops=int(hops),
                        max_nodes=int(max_nodes), color=chosen, seed=int(seed))
    except NotFound as err:
        st.info(str(err))
        return
    nodes, edges = layout(graph, int(seed))
    sampled = " (sampled: more of the network is not shown)" if graph["sampled"] else ""
    st.text(f"{len(nodes)} agents, {len(edges)} edges{sampled}")
    if nodes.empty:
        st.info("No agents to show.")
        return
    st.altair_chart(chart(nodes, edges, chosen), width="stretch")
    with st.expander("Agents shown"):
        st.dataframe(nodes[["agent", "value", "degree"]], hide_index=True)


if __name__ == "__main__":
    render()
