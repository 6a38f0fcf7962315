"""Shared fixtures of the causal tests."""

import pytest


class NoFitLearner:
    """A nuisance learner that fails the test if any fit starts: the input checks must come first."""

    def fit(self, *a, **k):
        raise AssertionError("fit must not start on bad input")

    def predict(self, *a, **k):
        raise AssertionError


@pytest.fixture
def no_fit_learner() -> NoFitLearner:
    """A :class:`NoFitLearner` (PLCE's or EffectCurve's learner in bad-input tests)."""
    return NoFitLearner()
