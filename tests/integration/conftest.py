"""Fixtures for the integration tier (the database fixtures live in tests/conftest.py)."""

from tests.integration.httpserver import http_server

__all__ = ["http_server"]
