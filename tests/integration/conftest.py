"""Fixtures for the integration tier (the database fixtures live in tests/conftest.py)."""

from tests.integration.httpserver import http_server
from tests.integration.llmserver import llm_server

__all__ = ["http_server", "llm_server"]
