"""Triggers: schedules fired exactly once by any number of schedulers, and webhooks."""
