"""The social scenario's part of the scenario page: the posts feed (newest first, text as
written) and a post's repost cascade as a tree."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from populace.webui.queries import NotFound, RunQueries, parse_condition

from .common import PAGE_SIZE, show_error

FEED_COLUMNS = ["post_id", "step", "author_id", "kind", "content", "topic", "stance", "parent_id",
                "root_id"]
MAX_CASCADE = 1000
"""The most posts of one cascade read and drawn."""


def feed(q: RunQueries) -> None:
    """The newest posts, a page at a time, content shown as plain text."""
    st.subheader("Posts")
    cols = st.columns([1, 1, 2])
    kind = cols[0].selectbox("Kind", ["all", "post", "repost", "quote", "comment"],
                             key="social_kind")
    page_no = cols[1].number_input("Page", min_value=1, value=1, step=1, key="social_page")
    author = cols[2].number_input("Author (empty: everyone)", min_value=0, value=None, step=1,
                                  key=f"social_author_{q.id}")
    conditions = [] if kind == "all" else [parse_condition(f"kind={kind}")]
    if author is not None:
        conditions.append(parse_condition(f"author_id={int(author)}"))
    rows = q.rows("posts", conditions, offset=(int(page_no) - 1) * PAGE_SIZE,
                  limit=PAGE_SIZE)["rows"]
    if not rows:
        st.info("No posts yet." if not conditions and page_no == 1 else "No such posts.")
        return
    frame = pd.DataFrame(rows)
    st.dataframe(frame[[c for c in FEED_COLUMNS if c in frame]], hide_index=True)


def cascade_tree(posts: list[dict[str, Any]], root: int) -> str:
    """A cascade as an indented text tree: each post under the post it reposts, quotes or
    comments on, in the order written."""
    children: dict[int, list[dict[str, Any]]] = {}
    by_id = {int(p["post_id"]): p for p in posts}
    for p in sorted(posts, key=lambda p: int(p["post_id"])):
        if int(p["post_id"]) != root:
            parent = int(p["parent_id"])
            children.setdefault(parent if parent in by_id else root, []).append(p)
    lines: list[str] = []

    def line(p: dict[str, Any], depth: int) -> None:
        content = " ".join(str(p.get("content") or "").split())
        text = f": {content[:120]}" if content else ""
        lines.append(f"{'    ' * depth}#{p['post_id']} {p['kind']} by agent {p['author_id']} "
                     f"at step {p['step']}{text}")
        for child in children.get(int(p["post_id"]), []):
            line(child, depth + 1)

    if root in by_id:
        line(by_id[root], 0)
    return "\n".join(lines)


def cascade(q: RunQueries) -> None:
    """Pick an original post (the largest cascades first), then its tree of reposts."""
    st.subheader("Repost cascade")
    biggest = []
    if "cascades" in q.tables():
        newest = q.rows("cascades", [], limit=PAGE_SIZE)["rows"]
        biggest = [int(r["root_id"]) for r in sorted(newest, key=lambda r: -int(r["scale"]))]
    root = st.number_input("Original post id", min_value=0,
                           value=biggest[0] if biggest else None, step=1,
                           key=f"social_root_{q.id}")
    if root is None:
        st.info("No cascade yet: type a post id.")
        return
    try:
        posts = q.rows("posts", [parse_condition(f"root_id={int(root)}")],
                       limit=MAX_CASCADE)["rows"]
    except NotFound as err:
        show_error(err)
        return
    if not posts:
        st.info(f"Post {int(root)} has no cascade (no such original post).")
        return
    st.text(f"{len(posts)} posts in the cascade of post {int(root)}"
            + (f" (the newest {MAX_CASCADE})" if len(posts) >= MAX_CASCADE else ""))
    st.code(cascade_tree(posts, int(root)), language=None)


def render(q: RunQueries) -> None:
    """The social part of the scenario page."""
    feed(q)
    cascade(q)


__all__ = ["cascade_tree", "render"]
