"""Cascade statistics of a social run: one row per original post, and their distribution.

Core objects:
    cascade_stats: per original post, the size of its repost cascade (posts and distinct
        users), its depth, largest breadth and structural virality (the mean distance between
        all pairs of posts of the repost tree: the Wiener index over n(n-1)/2, Goel et al.,
        2016), computed by the scenario's own ``cascade_metrics``.
    cascade_distribution: the complementary cumulative distribution of one of those columns.
    plot_cascades: that distribution on log-log axes, one line per call (to compare runs).

Needs the ``analysis`` extra (matplotlib, scipy); the scenario itself does not import this
module. OASIS reports a cascade's scale as the users it reached; here ``size`` counts posts
(what the ``cascades`` table calls ``scale``) and ``users`` the distinct authors among them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

from populace.simulator.analysis import new_axes
from populace.storage import Run

from .metrics import cascade_metrics

COLUMNS = ("root_id", "author_id", "step", "topic", "size", "users", "depth", "max_breadth",
           "structural_virality")
TREE_COLUMNS = ("depth", "max_breadth", "structural_virality")


def cascade_stats(source: Run | pd.DataFrame, *, step: int | None = None,
                  singletons: bool = False) -> pd.DataFrame:
    """Cascade measures of every original post (``kind`` post) of a run.

    A cascade is the original post with its reposts and quotes, recursively (comments are not
    part of it, and cannot be reposted). Nodes are posts: an agent who reposts twice counts
    twice in ``size`` and once in ``users``.

    Args:
        source: a run (its ``posts`` table is read), or a posts DataFrame with ``post_id``,
            ``root_id``, ``kind`` and ``author_id`` (and ``step``, ``topic``). Without a
            ``parent_id`` column the repost tree is unknown (e.g. data whose reposts name only
            the original post, as OASIS's ``original_post_id``): ``depth``, ``max_breadth``
            and ``structural_virality`` are then NaN.
        step: count only posts created at or before this step (the cascades as they stood
            then); default every post.
        singletons: keep original posts that nobody reposted or quoted (size 1, depth 0,
            breadth 1, virality NaN: no pairs). The default keeps cascades of size >= 2, the
            rows of the run's ``cascades`` table.

    Returns:
        One row per cascade, largest first (then by ``root_id``): ``root_id``, ``author_id``,
        ``step`` (when the original was posted), ``topic``, ``size`` (posts, the root
        included), ``users`` (distinct authors), ``depth`` (edges on the longest chain from the
        root), ``max_breadth`` (most posts at one depth), ``structural_virality``.

    Raises:
        ValueError: a missing column, or a post whose parent is not in the frame (filter
            whole cascades, by ``root_id``, rather than single posts).
    """
    posts = source.table("posts") if isinstance(source, Run) else source
    needed = [c for c in ("post_id", "root_id", "kind", "author_id") if c not in posts.columns]
    if needed:
        raise ValueError(f"the posts have no column {', '.join(map(repr, needed))} (they have "
                         f"{', '.join(map(str, posts.columns))})")
    if step is not None:
        if "step" not in posts.columns:
            raise ValueError("step= needs a step column in the posts")
        posts = posts[posts["step"] <= step]
    posts = posts.sort_values("post_id", kind="stable")
    in_tree = (posts["kind"] != "comment").to_numpy()
    tree = posts[in_tree]
    roots = tree[tree["kind"] == "post"]
    grouped = tree.groupby("root_id", sort=True)
    out = pd.DataFrame({
        "root_id": roots["post_id"].to_numpy(np.int64),
        "author_id": roots["author_id"].to_numpy(np.int64),
        "step": (roots["step"].to_numpy(np.int64) if "step" in roots.columns
                 else np.full(len(roots), -1, dtype=np.int64)),
        "topic": roots["topic"].to_numpy() if "topic" in roots.columns else None,
    })
    out["size"] = grouped.size().reindex(out["root_id"]).fillna(0).to_numpy(np.int64)
    out["users"] = grouped["author_id"].nunique().reindex(out["root_id"]).fillna(0).to_numpy(
        np.int64)
    if "parent_id" in posts.columns:
        tree_stats = _tree_measures(posts, in_tree).set_index("root_id")
        at = tree_stats.reindex(out["root_id"])
        alone = (out["size"] <= 1).to_numpy()
        out["depth"] = np.where(alone, 0, at["depth"].to_numpy(dtype=float))
        out["max_breadth"] = np.where(alone, 1, at["max_breadth"].to_numpy(dtype=float))
        out["structural_virality"] = at["structural_virality"].to_numpy(dtype=float)
        for col in ("depth", "max_breadth"):
            out[col] = out[col].astype("int64")
    else:
        for col in TREE_COLUMNS:
            out[col] = np.nan
    if not singletons:
        out = out[out["size"] >= 2]
    out = out.sort_values(["size", "root_id"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)[list(COLUMNS)]


def _tree_measures(posts: pd.DataFrame, in_tree: np.ndarray) -> pd.DataFrame:
    """``cascade_metrics`` over posts whose ids need not be 0..n-1 (a subset of whole
    cascades, or the posts up to a step): ids become positions first."""
    ids = posts["post_id"].to_numpy(np.int64)
    if not len(ids):
        return cascade_metrics(ids, ids, np.zeros(0, dtype=bool))
    parent = posts["parent_id"].to_numpy(np.int64)
    root = posts["root_id"].to_numpy(np.int64)
    has_parent = parent >= 0
    parent_pos = np.searchsorted(ids, parent)
    found = np.zeros(len(ids), dtype=bool)
    inside = parent_pos < len(ids)
    found[inside] = ids[parent_pos[inside]] == parent[inside]
    orphans = has_parent & ~found
    if orphans.any():
        raise ValueError(f"{int(orphans.sum())} posts have a parent that is not in the posts "
                         f"(e.g. post {int(ids[orphans][0])}): keep whole cascades (filter by "
                         "root_id), or pass every post")
    root_pos = np.searchsorted(ids, root)
    if not np.array_equal(ids[np.minimum(root_pos, len(ids) - 1)], root):
        raise ValueError("some posts' root_id is not in the posts: keep whole cascades")
    frame = cascade_metrics(np.where(has_parent, parent_pos, -1), root_pos, in_tree)
    frame["root_id"] = ids[frame["root_id"].to_numpy(np.int64)]
    return frame


def cascade_distribution(stats: pd.DataFrame, column: str = "size") -> pd.DataFrame:
    """The distribution of one cascade measure: one row per distinct value, with ``count``,
    ``share`` and ``ccdf`` (the share of cascades with a value at least this large).

    Args:
        stats: ``cascade_stats``' frame (or several, concatenated).
        column: ``size``, ``users``, ``depth``, ``max_breadth`` or ``structural_virality``.
    """
    if column not in stats.columns:
        raise ValueError(f"no column {column!r} in the cascade statistics (they have "
                         f"{', '.join(map(str, stats.columns))})")
    values = stats[column].dropna()
    counts = values.value_counts().sort_index()
    total = counts.sum()
    out = pd.DataFrame({column: counts.index.to_numpy(), "count": counts.to_numpy()})
    out["share"] = out["count"] / total if total else np.nan
    # P(X >= x): the cascades of this value and every larger one (counted in integers, so
    # that the first value's is exactly 1)
    out["ccdf"] = out["count"][::-1].cumsum()[::-1].to_numpy() / total if total else np.nan
    return out


def plot_cascades(stats: pd.DataFrame, column: str = "size", *, ax: Axes | None = None,
                  label: str | None = None) -> Axes:
    """The complementary cumulative distribution of a cascade measure, on log-log axes for
    sizes, users, depths and breadths (linear for structural virality).

    Call it again with the same ``ax`` and another ``label`` to compare runs or conditions.

    Returns:
        The axes, with one more line (markers at each distinct value).
    """
    dist = cascade_distribution(stats, column)
    ax = new_axes(ax)
    count = f"{int(dist['count'].sum()):,} cascades"
    ax.plot(dist[column], dist["ccdf"], marker="o", markersize=3, linewidth=1.2,
            drawstyle="steps-post", label=f"{label} ({count})" if label is not None else None)
    if column != "structural_virality" and len(dist) and dist[column].min() > 0:
        ax.set_xscale("log")
        # whole numbers on the log axis (2, 5, 10, 20), not 2 x 10^0
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("log")
    what = column.replace("_", " ")
    ax.set_xlabel(f"cascade {what}")
    ax.set_ylabel("share of cascades ≥ x")
    ax.set_title(f"cascade {what} distribution" + ("" if label is not None else f" ({count})"))
    if label is not None:
        ax.legend(fontsize="small")
    return ax
