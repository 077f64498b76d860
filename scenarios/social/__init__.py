"""The social-network scenario (X/Reddit style): posts, reposts, quotes, comments, likes,
dislikes, follows and unfollows on a pluggable recommender feed, with opinion dynamics,
polarization, echo-chamber and cascade metrics.

Core objects:
    SocialScenario: the scenario class (registered as ``social``).
    SocialConfig, FeedConfig, SocialRuleParams: its configuration.
    register_feed: add a recommender.
    cascades: cascade measures of a run's posts table.
"""

from .config import FeedConfig, SocialConfig, SocialRuleParams
from .feeds import register_feed
from .metrics import bimodality_coefficient, cascades
from .scenario import SocialObservation, SocialScenario

__all__ = [
    "FeedConfig",
    "SocialConfig",
    "SocialObservation",
    "SocialRuleParams",
    "SocialScenario",
    "bimodality_coefficient",
    "cascades",
    "register_feed",
]
