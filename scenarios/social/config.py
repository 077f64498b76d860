"""Configuration of the social scenario.

Core objects:
    SocialConfig: the ``scenario:`` section (topics, feed, where opinions come from).
    SocialRuleParams: ``policy.params`` of the rule-based social agent.
    SocialBroadcast: the ``args`` of a broadcast event (a post by the system account).
    SocialJoin: the ``args`` of a join event (whom newcomers follow).

Its ``feed:`` section, ``FeedConfig``, is declared with the recommenders it names (``feeds``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from populace.simulator.population.distributions import support

from .feeds import FeedConfig


class SocialConfig(BaseModel):
    """The social network: topics, the feed, and the population attributes it reads."""

    model_config = ConfigDict(extra="forbid")

    topics: list[str] = Field(
        default_factory=lambda: ["politics", "economy", "health", "technology", "sports"],
        min_length=1, description="topics posts are about")
    opinion_attribute: str = Field(
        "opinion", description="population attribute with each agent's initial opinion in "
        "[-1, 1]; uniform(-1, 1) when the population has no such attribute")
    interest_attribute: str = Field(
        "interest", description="population attribute naming each agent's topic of interest; "
        "a random topic when absent")
    feed: FeedConfig = Field(default_factory=FeedConfig)
    seed_posts: bool = Field(True, description="publish posts the population file brought "
                             "(OASIS previous_tweets) at step 0")
    extreme_threshold: float = Field(0.6, gt=0, lt=1, description="|opinion| at or above which "
                                     "an agent counts as extreme (polarization metric)")

    def check_experiment(self, experiment: Any,
                         base_dir: Path) -> list[tuple[tuple[Any, ...], str]]:
        """Problems of the whole experiment seen from this scenario (see config.py).

        An opinion attribute must be numeric and drawn within [-1, 1]: values outside would be
        clipped to the bounds (a uniform(-3, 3) would start two agents in three at +-1). A
        distribution with unbounded tails (normal) is allowed; the run warns with the number of
        agents clipped.
        """
        name = self.opinion_attribute
        spec = experiment.population.attributes.get(name)
        if spec is None:
            return []
        loc = ("population", "attributes", name)
        bounds = support(spec)
        if bounds is None:
            return [(loc, f"the opinion attribute must draw numbers in [-1, 1] (see "
                     f"scenario.opinion_attribute), not {spec.dist} values of another kind")]
        low, high = bounds
        if (math.isfinite(low) and low < -1) or (math.isfinite(high) and high > 1) or (
                low > 1 or high < -1):
            return [(loc, f"opinions lie in [-1, 1] but this {spec.dist} distribution draws "
                     f"values in [{low:g}, {high:g}]; those outside would be clipped to -1 or 1 "
                     "(draw from [-1, 1], e.g. {dist: uniform, low: -1, high: 1})")]
        return []


class SocialRuleParams(BaseModel):
    """Parameters of the rule-based social agent.

    Each step an active agent takes one action, drawn with these rates (``do_nothing`` takes the
    rest). Engagement (repost, quote, comment, like, follow) goes to a post the agent agrees with
    (stance within ``confidence`` of its opinion) with probability ``homophily``, else to any post
    in its feed; dislikes and unfollows go to posts it disagrees with. Opinions follow bounded
    confidence: they move by ``convergence`` toward the mean stance of agreeable posts seen and,
    with ``backfire`` > 0, away from the mean stance of disagreeable ones. With ``herding`` > 0
    the votes a post shows make it likelier to be picked (the herd effect OASIS measures).

    The eight ``*_rate`` values must add up to at most 1; an action that needs a target post and
    finds none becomes ``do_nothing``.
    """

    model_config = ConfigDict(extra="forbid")

    post_rate: float = Field(0.2, ge=0, le=1, description="probability that an active agent "
                             "writes a new post")
    repost_rate: float = Field(0.1, ge=0, le=1, description="probability that an active agent "
                               "reposts a post of its feed")
    quote_rate: float = Field(0.03, ge=0, le=1, description="probability that an active agent "
                              "quotes a post of its feed")
    comment_rate: float = Field(0.07, ge=0, le=1, description="probability that an active agent "
                                "comments on a post of its feed")
    like_rate: float = Field(0.3, ge=0, le=1, description="probability that an active agent "
                             "likes a post of its feed")
    dislike_rate: float = Field(0.05, ge=0, le=1, description="probability that an active agent "
                                "dislikes a post of its feed it disagrees with")
    follow_rate: float = Field(0.05, ge=0, le=1, description="probability that an active agent "
                               "follows the author of a post of its feed")
    unfollow_rate: float = Field(0.02, ge=0, le=1, description="probability that an active "
                                 "agent unfollows the author of a post it disagrees with")
    confidence: float = Field(0.4, gt=0, le=2, description="bounded-confidence threshold")
    convergence: float = Field(0.1, ge=0, le=1, description="step toward agreeable stances")
    backfire: float = Field(0.0, ge=0, le=1, description="step away from disagreeable stances")
    homophily: float = Field(0.8, ge=0, le=1, description="share of engagement kept to agreeable posts")
    stance_noise: float = Field(0.1, ge=0, description="sd of a new post's stance around the opinion")
    topic_focus: float = Field(0.7, ge=0, le=1, description="chance a new post is on the agent's topic")
    herding: float = Field(0.0, ge=0, le=10, description="how much the votes a post shows steer "
                           "engagement: a post with likes - dislikes = s is picked with weight "
                           "exp(herding * s) (exp(-herding * s) for dislikes and unfollows); 0: "
                           "votes are ignored")

    @model_validator(mode="after")
    def _rates_sum(self) -> Self:
        total = (self.post_rate + self.repost_rate + self.quote_rate + self.comment_rate
                 + self.like_rate + self.dislike_rate + self.follow_rate + self.unfollow_rate)
        if total > 1 + 1e-9:
            raise ValueError(f"action rates add up to {total:.3f}; they must add up to at most 1 "
                             "(do_nothing takes the rest)")
        return self


class SocialBroadcast(BaseModel):
    """A post by the system account (author -1): its topic, stance and the votes it starts
    with (OASIS's herd-effect design seeds posts with an up- or a down-vote)."""

    model_config = ConfigDict(extra="forbid")

    topic: str | None = Field(None, description="one of scenario.topics (default: the first)")
    stance: float = Field(0.0, ge=-1, le=1, description="the post's stance in [-1, 1]")
    likes: int = Field(0, ge=0, description="likes it starts with")
    dislikes: int = Field(0, ge=0, description="dislikes it starts with")

    @field_validator("topic")
    @classmethod
    def _known_topic(cls, topic: str | None, info: ValidationInfo) -> str | None:
        config = (info.context or {}).get("config")
        if topic is not None and config is not None and topic not in config.topics:
            raise ValueError(f"topic {topic!r} is not among scenario.topics "
                             f"({', '.join(config.topics)})")
        return topic


class SocialJoin(BaseModel):
    """What a new user of the network starts with."""

    model_config = ConfigDict(extra="forbid")

    follows: int = Field(5, ge=0, le=10_000, description="accounts each newcomer follows, "
                         "drawn at random (seeded) among the agents present before it joined")
