"""Fixtures of the bad-input suite: the API tier's in-process app (``api``)."""

from tests.api.conftest import api

__all__ = ["api"]
