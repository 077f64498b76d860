"""The "guess 2/3 of the average" game (Keynesian beauty contest): level-k and language-model
players guess a number in [0, 100] each round; the closest to p times the mean guess win.
See docs/scenarios/beauty.md."""

from .scenario import BeautyContestScenario

__all__ = ["BeautyContestScenario"]
