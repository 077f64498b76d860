"""What a language-model agent answers in the social scenario, and how it becomes actions.

Core objects:
    decision_model: the pydantic model of one answer: a union of one model per action,
        told apart by the ``action`` field, each with an optional ``opinion``.
    SocialLLM: the scenario's ``LLMAdapter``: the template variables of a batch of
        observations, validated answers (or a fallback) as actions, and what agents remember.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, RootModel

from populace.simulator.llm_adapter import Id, LLMAdapter, Memory
from populace.simulator.population import Population
from populace.simulator.scenario import ActionBatch

from .actions import ACTIONS, SocialArgs
from .observation import SocialObservation
from .state import KINDS, SocialState

PROMPTS = Path(__file__).parent / "prompts"

Stance = Annotated[float, Field(ge=-1.0, le=1.0)]
Text = Annotated[str, Field(min_length=1, max_length=500)]


class _Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    opinion: Stance | None = None


def decision_model(topics: list[str]) -> type[BaseModel]:
    """The answer schema for a scenario with these topics (a discriminated union on ``action``)."""
    topic = Literal[tuple(topics)]  # type: ignore[valid-type]

    class CreatePost(_Decision):
        action: Literal["create_post"]
        topic: topic  # type: ignore[valid-type]
        content: Text
        stance: Stance

    class Repost(_Decision):
        action: Literal["repost"]
        post_id: Id

    class Quote(_Decision):
        action: Literal["quote"]
        post_id: Id
        content: Text
        stance: Stance

    class Comment(_Decision):
        action: Literal["comment"]
        post_id: Id
        content: Text
        stance: Stance

    class Like(_Decision):
        action: Literal["like"]
        post_id: Id

    class Dislike(_Decision):
        action: Literal["dislike"]
        post_id: Id

    class Follow(_Decision):
        action: Literal["follow"]
        user_id: Id

    class Unfollow(_Decision):
        action: Literal["unfollow"]
        user_id: Id

    class DoNothing(_Decision):
        action: Literal["do_nothing"]

    union = Annotated[CreatePost | Repost | Quote | Comment | Like | Dislike | Follow | Unfollow
                      | DoNothing, Field(discriminator="action")]

    class Answer(RootModel[union]):  # type: ignore[valid-type]
        """One decision of a social-network user: an object with an ``action`` field."""

    return Answer


def _post_text(kind: str, topic: str, stance: float, content: Any) -> str:
    if isinstance(content, str) and content:
        return content
    lean = "for" if stance > 0.15 else "against" if stance < -0.15 else "undecided about"
    return f"({kind} on {topic}, {lean} the issue, stance {stance:+.2f})"


ACTION_IMPORTANCE = {"create_post": 6.0, "quote": 5.0, "comment": 5.0, "repost": 4.0,
                     "follow": 4.0, "unfollow": 4.0, "like": 2.0, "dislike": 3.0}


class SocialLLM(LLMAdapter[SocialObservation, SocialArgs]):
    """Language-model users of the social network.

    Args:
        topics: the scenario's topics (a topic index of an observation names one of them).
        state: the scenario's state, read when prompts are built (posts, their likes, texts).
        population: the agents, whose attributes make their profiles.
        hidden: attributes left out of profiles (opinion and interest are shown on their own).
    """

    prompt_dir = PROMPTS

    def __init__(self, topics: list[str], state: SocialState, population: Population,
                 hidden: set[str]) -> None:
        self.topics = topics
        self.state = state
        self.population = population
        self.hidden = hidden
        self._model = decision_model(topics)
        self._profiles: list[dict[str, Any]] | None = None

    def decision_model(self) -> type[BaseModel]:
        """One answer of a language-model user (see ``decision_model``)."""
        return self._model

    def profiles(self) -> list[dict[str, Any]]:
        """Each agent's attributes as a dict, built on first use by a prompt (and again when
        agents have joined)."""
        if self._profiles is None or len(self._profiles) < self.population.size:
            self._profiles = self.population.profiles(self.hidden)
        return self._profiles

    def prompt_context(self, obs: SocialObservation
                       ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Template variables: the platform and topics, and each agent's profile and feed."""
        shared = {"platform": "Populace Social", "topics": self.topics,
                  "actions": list(ACTIONS)}
        profiles = self.profiles()
        p = self.state.posts
        kinds, likes = p.kind, p.likes  # column views, looked up once rather than per post
        followed = obs.followed()
        texts = self.state.content.lookup(obs.feed)  # row-major, like the loops below
        width = obs.feed.shape[1]
        out = []
        for i, agent in enumerate(obs.agents.tolist()):
            feed = []
            for j, post in enumerate(obs.feed[i].tolist()):
                if post < 0:
                    break
                kind = KINDS[int(kinds[post])]
                topic = self.topics[int(obs.topic[i, j])]
                stance = float(obs.stance[i, j])
                feed.append({"post_id": post, "author_id": int(obs.author[i, j]), "kind": kind,
                             "topic": topic, "stance": stance, "likes": int(likes[post]),
                             "followed": bool(followed[i, j]),
                             "text": _post_text(kind, topic, stance, texts[i * width + j])})
            out.append({"agent_id": agent, "profile": profiles[agent],
                        "opinion": float(obs.opinion[i]),
                        "interest": self.topics[int(obs.interest[i])], "feed": feed})
        return shared, out

    def decisions_to_actions(self, obs: SocialObservation, decisions: list[Any],
                             fallback: str) -> ActionBatch[SocialArgs]:
        """Validated answers as a social ``ActionBatch``; ``None`` entries take ``fallback``."""
        n = len(obs.agents)
        codes = np.full(n, ACTIONS.index(fallback), dtype=np.int16)
        post = np.full(n, -1, dtype=np.int64)
        target = np.full(n, -1, dtype=np.int64)
        topic = np.full(n, -1, dtype=np.int64)
        stance = np.full(n, np.nan)
        opinion = np.full(n, np.nan)
        content = np.full(n, None, dtype=object)
        lookup = {t: i for i, t in enumerate(self.topics)}
        for i, answer in enumerate(decisions):
            if answer is None:
                continue
            d = getattr(answer, "root", answer)
            codes[i] = ACTIONS.index(d.action)
            if d.opinion is not None:
                opinion[i] = d.opinion
            if hasattr(d, "post_id"):
                post[i] = d.post_id
            if hasattr(d, "user_id"):
                target[i] = d.user_id
            if hasattr(d, "topic"):
                topic[i] = lookup[d.topic]
            if hasattr(d, "stance"):
                stance[i] = d.stance
            if hasattr(d, "content"):
                content[i] = d.content
        return ActionBatch(np.asarray(obs.agents, dtype=np.int64), codes, SocialArgs(
            post_id=post, target_id=target, topic=topic, stance=stance, opinion=opinion,
            content=content))

    def memory_query(self, context: dict[str, Any]) -> str:
        """What an agent's memories are retrieved for: its interest and the posts in its feed."""
        return " ".join([context["interest"], *(post["text"] for post in context["feed"])])

    def memories(self, obs: SocialObservation, contexts: list[dict[str, Any]],
                 actions: ActionBatch[SocialArgs]) -> list[Memory]:
        """Each agent remembers what it did, and the most-liked post of its feed."""
        out: list[Memory] = []
        codes = actions.action.tolist()
        posts = actions.args.post_id.tolist()
        targets = actions.args.target_id.tolist()
        contents = actions.args.content.tolist()
        for i, context in enumerate(contexts):
            feed = {p["post_id"]: p for p in context["feed"]}
            if feed:
                top = max(feed.values(), key=lambda p: p["likes"])
                out.append(Memory(i, "observation", f"I read {_who(top['author_id'])}'s "
                                  f"{top['kind']} on {top['topic']}: {top['text']}",
                                  1.0 + min(4.0, np.log1p(top["likes"]))))
            name = ACTIONS[codes[i]]
            if name == "do_nothing":
                continue
            if name in ("follow", "unfollow"):
                text = f"I decided to {name} user {targets[i]}."
            elif name == "create_post":
                text = f"I posted: {contents[i]}" if contents[i] else "I wrote a post."
            else:
                seen = feed.get(posts[i])
                about = f" {_who(seen['author_id'])}'s post: {seen['text']}" if seen else (
                    f" post {posts[i]}")
                said = f" I wrote: {contents[i]}" if contents[i] else ""
                text = f"I chose to {name}{about}.{said}"
            out.append(Memory(i, "action", text, ACTION_IMPORTANCE[name]))
        return out


def _who(author: int) -> str:
    """How a memory names a post's author (-1: the system account of broadcasts)."""
    return f"user {author}" if author >= 0 else "the platform"
