"""The broker side: the Celery application, the orchestrator's client, and the Redis-backed stores."""
