"""Fixtures for the integration tier (the database fixtures live in tests/conftest.py)."""

from tests.integration.chatserver import chat_server
from tests.integration.httpserver import http_server
from tests.integration.llmserver import llm_server

__all__ = ["chat_server", "http_server", "llm_server"]
