"""The social-network scenario (X/Reddit style): posts, reposts, quotes, comments, likes,
dislikes, follows and unfollows on a pluggable recommender feed, with opinion dynamics,
polarization, echo-chamber and cascade metrics.

Core objects:
    SocialScenario: the scenario class (registered as ``social``).
    SocialObservation, SocialArgs: what its agents perceive, and their actions' arguments.
    SocialConfig, FeedConfig, SocialRuleParams: its configuration.
    register_feed: add a recommender.
    cascades: cascade measures of a run's posts table.
"""

from .actions import SocialArgs
from .config import SocialConfig, SocialRuleParams
from .feeds import FeedConfig, register_feed
from .metrics import bimodality_coefficient, cascades
from .observation import SocialObservation
from .scenario import SocialScenario

__all__ = [
    "FeedConfig",
    "SocialArgs",
    "SocialConfig",
    "SocialObservation",
    "SocialRuleParams",
    "SocialScenario",
    "bimodality_coefficient",
    "cascades",
    "register_feed",
]
