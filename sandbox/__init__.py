"""The sandbox: compile-time policy, the trigger's event and api, the flow, and the process jail.

Pure Python: nothing here imports Celery or Redis.
"""
