"""The worker: Celery tasks that load a tenant's actions, run the flow in the jail and store results,
and the `actionrunner` command line."""
