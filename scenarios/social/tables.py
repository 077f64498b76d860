"""Database tables of the social scenario (declared on the shared ``populace.storage.Base``).

Core objects:
    Post: posts, reposts, quotes and comments (``kind``), with parent and cascade root.
    Like: likes (+1) and dislikes (-1) of posts.
    Follow: follow (+1) and unfollow (-1) events; step 0 holds the initial follow graph.
    SocialAction: the trace of every action agents took (the engine writes it).
    Cascade: per-root repost-cascade metrics, written at the end of a run.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Float, Integer, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from populace.storage import Base, EventMixin


class Post(EventMixin, Base):
    """A post; reposts, quotes and comments point at their ``parent_id`` and cascade ``root_id``.

    ``post_id`` is unique within a run (the engine numbers posts in creation order).
    """

    __tablename__ = "posts"

    post_id: Mapped[int] = mapped_column(BigInteger)
    author_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(10))  # post | repost | quote | comment
    parent_id: Mapped[int] = mapped_column(BigInteger)  # -1 for an original post
    root_id: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(100))
    stance: Mapped[float] = mapped_column(Float)
    content: Mapped[str | None] = mapped_column(Text, nullable=True)


class Like(EventMixin, Base):
    """A like (``value`` +1) or dislike (-1) of a post by an agent."""

    __tablename__ = "likes"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    post_id: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[int] = mapped_column(SmallInteger)


class Follow(EventMixin, Base):
    """A follow (``op`` +1) or unfollow (-1) event; step 0 rows are the initial graph."""

    __tablename__ = "follows"

    follower_id: Mapped[int] = mapped_column(BigInteger)
    followee_id: Mapped[int] = mapped_column(BigInteger)
    op: Mapped[int] = mapped_column(SmallInteger)


class SocialAction(EventMixin, Base):
    """One agent's action in a step, with its target and whether it took effect.

    New posts' topic and stance are in ``posts``; opinions in ``agent_states`` snapshots.
    """

    __tablename__ = "actions"

    agent_id: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(20))
    post_id: Mapped[int] = mapped_column(BigInteger)  # target post, -1 if none
    target_id: Mapped[int] = mapped_column(BigInteger)  # target agent, -1 if none
    accepted: Mapped[bool] = mapped_column(Boolean)  # False: refused (see rejected.* metrics)


class Cascade(EventMixin, Base):
    """Repost cascade of one original post: scale, depth, max breadth, structural virality."""

    __tablename__ = "cascades"

    root_id: Mapped[int] = mapped_column(BigInteger)
    scale: Mapped[int] = mapped_column(Integer)
    depth: Mapped[int] = mapped_column(Integer)
    max_breadth: Mapped[int] = mapped_column(Integer)
    structural_virality: Mapped[float] = mapped_column(Float)


TABLES = ("posts", "likes", "follows", "actions", "cascades")
