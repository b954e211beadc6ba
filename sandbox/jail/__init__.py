"""The process jail: the isolation boundary that holds when the language policy fails.

`Jail` (an `ActionRunner`) owns one fork server and forks one jailed child per request; see jail.py
for the design, child.py for the child's set-up checklist, and README.md ("Isolation: the
layers") for what each layer stops.
"""

from __future__ import annotations

from sandbox.jail.jail import CallResult, Jail

__all__ = ["CallResult", "Jail"]
