"""Process plumbing: settings, logs, the event-loop runtime, the clock and the embedded redis-server."""
