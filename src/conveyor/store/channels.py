"""Notification channel names, shared by the dialects and the controls."""

WAKE_CHANNEL = "conveyor"  # work for workers: queued, signalled, controls
EVENTS_CHANNEL = "conveyor_events"  # new execution events, for live feeds
FINISHED_CHANNEL = "conveyor_finished"  # executions that finished: <id>:<status>, for waiters
LIVE_CHANNEL = "conveyor_live"  # live-only messages (progress, deltas): never stored
