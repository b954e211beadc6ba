"""The flow (SPEC section 5): the bound actions of one execution, run in order on the trusted side.

Each handler runs through an `ActionRunner` (in production the jail); the flow decides what the
answers mean. It keeps a working copy of the cache so later actions see earlier writes, re-checks every
cache command on the trusted side, stops at the first deny, suspension or failure, signs the resume
state, and keeps the result document under `limits.result_max_bytes`.

`transaction.set_result_url`: every call is listed as a command, in order; the orchestrator takes the
last one in the flow (across a suspension, the last one of the last execution that issued one).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox import cache_rules
from sandbox.bound import BoundAction, check_secrets
from sandbox.errors import InvalidInput, LimitExceeded, ResumeRefused
from sandbox.flow_result import ResultBuilder
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import (
    ActionReport, ContinueRequest, ErrorInfo, Event, Handler, Outcome, PromptRender, Result, ResumeInfo,
    SendUserTo, event_to_dict,
)
from sandbox.resume import ResumeSigner, ResumeState, SuspendKind, new_resume_id
from sandbox.runner import ActionRequest, ActionRun, ActionRunner

__all__ = ["BoundAction", "check_secrets", "resume_flow", "run_flow"]

ON_EXECUTE: Handler = "on_execute_post_challenge"
ON_CONTINUE: Handler = "on_continue_post_challenge"


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Start:
    """Where an execution starts: the action index, its handler, and what only that action sees."""

    index: int
    handler: Handler
    continue_request: dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None


def run_flow(
    actions: Sequence[BoundAction], event: Event, *, runner: ActionRunner,
    cache: Mapping[str, Mapping[str, Any]], signer: ResumeSigner, tenant: str,
    limits: Limits = DEFAULT_LIMITS, now_ms: Callable[[], int] | None = None,
) -> Result:
    """Run the bound actions in order on `event` and return the result document.

    `cache` is the tenant's cache as {key: {"value", "expires_at" (ms)}}; it is not modified (the
    result's cache commands say what to apply). `now_ms` is the wall clock the actions see (ms since
    the epoch). Never raises for anything tenant code does; raises LimitExceeded for too many actions
    and InvalidInput for duplicate names or bad secrets.
    """
    _check_actions(actions, limits)
    execution = _Execution(actions, event, event.transaction.state, runner, cache, signer, tenant,
                           limits, now_ms)
    return execution.run(_Start(0, ON_EXECUTE))


def resume_flow(
    actions: Sequence[BoundAction], event: Event, *, resume: ResumeInfo,
    continue_request: ContinueRequest, runner: ActionRunner, cache: Mapping[str, Mapping[str, Any]],
    signer: ResumeSigner, tenant: str, limits: Limits = DEFAULT_LIMITS,
    now_ms: Callable[[], int] | None = None,
) -> Result:
    """Resume a suspended flow with the `/continue` request and a fresh `event`.

    After a redirect or prompt, the suspended action's `on_continue_post_challenge` runs (for a prompt
    with `event.prompt` = {id, fields: the request's body, vars}); after a challenge, the next action.
    Then the remaining actions' `on_execute_post_challenge`. The result lists only commands issued
    after the resume. Raises ResumeRefused (forged, expired, other tenant, other user, actions changed,
    state mismatch) before running anything. Single use is the caller's to enforce: consume the
    token's `ResumeState.id` (from `signer.verify`) in a store before calling this.
    """
    _check_actions(actions, limits)
    clock = now_ms or _now_ms
    state = signer.verify(resume.token, now_s=clock() / 1000)
    _check_resume(state, actions, event, resume, continue_request, tenant)
    if state.kind == "challenge":
        start = _Start(state.index + 1, ON_EXECUTE)
    else:
        prompt = None
        if state.kind == "prompt":
            prompt = {"id": state.prompt_id, "fields": continue_request.body,
                      "vars": state.prompt_vars or {}}
        start = _Start(state.index, ON_CONTINUE, continue_request.model_dump(mode="json"), prompt)
    execution = _Execution(actions, event, state.state, runner, cache, signer, tenant, limits,
                           clock)
    return execution.run(start)


def _check_actions(actions: Sequence[BoundAction], limits: Limits) -> None:
    if len(actions) > limits.actions_max_count:
        raise LimitExceeded(
            f"{len(actions)} actions bound, over the limit of {limits.actions_max_count}"
        )
    seen: set[str] = set()
    for action in actions:
        if action.name in seen:
            raise InvalidInput(f"action {action.name!r} is bound twice; names tag commands and "
                               "must be unique", field="actions")
        seen.add(action.name)
        check_secrets(action.secrets, source=f"action {action.name!r}", limits=limits)


def _check_resume(
    state: ResumeState, actions: Sequence[BoundAction], event: Event, resume: ResumeInfo,
    continue_request: ContinueRequest, tenant: str,
) -> None:
    if state.tenant != tenant:
        raise ResumeRefused("the resume token belongs to another tenant")
    if state.user_id != event.user.user_id:
        raise ResumeRefused("the resume token was issued for another user")
    if [tuple(a) for a in state.actions] != [a.fingerprint for a in actions]:
        raise ResumeRefused("the bound actions (names, versions or sources) changed since the flow "
                            "was suspended")
    if not 0 <= state.index < len(actions):
        raise ResumeRefused("the resume token names an action that is not bound")
    if resume.state != state.state:
        raise ResumeRefused("the resume info's state does not match its token")
    if continue_request.state != state.state:
        raise ResumeRefused("the continue request's state does not match the suspended flow's state")
    if event.transaction.state not in (None, state.state):
        raise ResumeRefused("the event's transaction.state does not match the suspended flow's state")


class _Execution:
    """One run of the actions from a start point; collects the result as it goes."""

    def __init__(
        self, actions: Sequence[BoundAction], event: Event, state: str | None, runner: ActionRunner,
        cache: Mapping[str, Mapping[str, Any]], signer: ResumeSigner, tenant: str, limits: Limits,
        now_ms: Callable[[], int] | None,
    ) -> None:
        self.actions = actions
        self.user_id = event.user.user_id
        self.state = state
        self.event_data = event_to_dict(event)
        self.runner = runner
        self.cache = {key: dict(record) for key, record in cache.items()}
        self.signer = signer
        self.tenant = tenant
        self.limits = limits
        self.clock = now_ms or _now_ms
        self.deadline = time.monotonic() + limits.execution_wall_seconds
        self.out = ResultBuilder(limits)

    def run(self, start: _Start) -> Result:
        for index in range(start.index, len(self.actions)):
            action = self.actions[index]
            first = index == start.index
            handler = start.handler if first else ON_EXECUTE
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return self.out.failed(ErrorInfo(
                    action=action.name, type="timeout",
                    message=f"the execution ran out of its {self.limits.execution_wall_seconds:g} s "
                            "wall clock before this action could start",
                ))
            request = self._request(action, handler, start if first else None)
            run = self.runner.run(request, timeout_seconds=remaining)
            stop = self._take(index, action, run)
            if stop is not None:
                return stop
        return self.out.finish("completed")

    def _request(self, action: BoundAction, handler: Handler, start: _Start | None) -> ActionRequest:
        # SECURITY: a deep copy per action, so nothing one action's runner does to its request can
        # reach the next action's event or cache, and only this action's secrets are in it.
        event = copy.deepcopy(self.event_data)
        event["secrets"] = dict(action.secrets)
        if start is not None and start.prompt is not None:
            event["prompt"] = copy.deepcopy(start.prompt)
        return ActionRequest(
            action=action.name, source=action.source, handler=handler, event=event,
            now_ms=self.clock(), cache=copy.deepcopy(self.cache),
            continue_request=copy.deepcopy(start.continue_request) if start else None,
            limits=self.limits,
        )

    def _take(self, index: int, action: BoundAction, run: ActionRun) -> Result | None:
        """Record one action's run; return the final result when the flow stops here."""
        outcome, error = _judge(action, run)
        self.out.report(ActionReport(
            name=action.name, version=action.version, outcome=outcome, wall_ms=run.wall_ms,
            cpu_ms=run.cpu_ms, peak_memory_kb=run.peak_memory_kb,
        ))
        output = run.output
        if output is not None:
            self.out.console(action.name, output.console, output.console_dropped_bytes)
        if error is not None:
            return self.out.failed(error)
        assert output is not None  # _judge calls a run without output a failure
        # SECURITY: the trusted side re-checks every cache command against SPEC's limits on its own
        # working copy; a child that lies about what it wrote cannot grow the cache past them.
        refusals = cache_rules.apply_cache_commands(
            self.cache, output.commands, now_ms=self.clock(), limits=self.limits
        )
        for refusal in refusals:
            self.out.log(action.name, f"[actionrunner] {refusal.command.type} of key "
                                      f"{refusal.command.key[:80]!r} refused: {refusal.code}; "
                                      "it was not applied")
        dropped = {id(refusal.command) for refusal in refusals}
        applied = [command for command in output.commands if id(command) not in dropped]
        kinds = {command.type for command in applied}
        if "access.deny" in kinds:
            return self.out.commit(action.name, applied, status="denied")
        suspend = _suspend_kind(kinds)
        if suspend is None:
            return self.out.commit(action.name, applied, status=None)
        applied = [self._with_state(command) for command in applied]
        resume = self._resume_info(index, applied, suspend)
        return self.out.commit(action.name, applied, status="suspended", resume=resume)

    def _with_state(self, command: Any) -> Any:
        """A redirect carries the flow's state, so the `/continue` request can hand it back."""
        if isinstance(command, SendUserTo) and self.state is not None:
            return command.model_copy(update={"query": {**command.query, "state": self.state}})
        return command

    def _resume_info(self, index: int, commands: list[Any], kind: SuspendKind) -> ResumeInfo:
        prompt = next((c for c in commands if isinstance(c, PromptRender)), None)
        issued = self.clock() / 1000
        state = ResumeState(
            id=new_resume_id(), tenant=self.tenant, user_id=self.user_id,
            state=self.state, actions=[a.fingerprint for a in self.actions],
            index=index, kind=kind, prompt_id=prompt.prompt_id if prompt else None,
            prompt_vars=prompt.vars if prompt else None, issued_at=issued,
            expires_at=issued + self.limits.resume_state_ttl_seconds,
        )
        return ResumeInfo(state=state.state, token=self.signer.sign(state))


def _suspend_kind(kinds: set[str]) -> SuspendKind | None:
    if "prompt.render" in kinds:
        return "prompt"
    if "redirect.send_user_to" in kinds:
        return "redirect"
    if kinds & {"authentication.challenge_with", "authentication.challenge_with_any"}:
        return "challenge"
    return None


def _judge(action: BoundAction, run: ActionRun) -> tuple[Outcome, ErrorInfo | None]:
    """The action's outcome and, when it failed, why. Trusts nothing the child claims blindly."""
    output = run.output
    outcome: Outcome = run.outcome
    if outcome == "ok":
        outcome = "crashed" if output is None else output.outcome
    if outcome != "ok":
        err = output.error if output is not None else None
        if outcome == "error" and err is not None:
            return outcome, _error(action, err.type, err.message, err.line)
        message = (err.message if err else "") or run.detail or f"the action ended with {outcome}"
        return outcome, _error(action, outcome, message, err.line if err else None)
    assert output is not None
    # SECURITY: commands are tagged by the trusted side's idea of who ran; a child claiming another
    # action's name could otherwise slip commands past per-action bookkeeping.
    if any(command.action != action.name for command in output.commands):
        return "violation", _error(action, "violation",
                                   "the action's output claims commands of another action")
    types = [command.type for command in output.commands]
    if types.count("prompt.render") > 1 or ("prompt.render" in types
                                            and "redirect.send_user_to" in types):
        return "violation", _error(action, "violation",
                                   "at most one prompt per action, and not with a redirect")
    return "ok", None


def _error(action: BoundAction, type_: str, message: str, line: int | None = None) -> ErrorInfo:
    # The child's words are bounded before they enter the result document (the message too, by
    # ResultBuilder.failed).
    return ErrorInfo(action=action.name, type=type_[:200], message=message, line=line)
