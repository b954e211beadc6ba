"""`api`: what an action can ask of the password-reset flow (SPEC section 3).

`Api(request)` is handed to the handler; each namespace is a small TenantObject sharing one
`ApiState`. Calls that ask the flow to do something append a `sandbox.models` command (tagged with
`request.action`) in issue order; `api.commands` lists them once the handler returns. Misuse raises
`ApiError`, whose message says what was wrong and what is accepted. The redirect and cache
namespaces live in `sandbox.api_redirect` and `sandbox.api_cache`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sandbox.api_base import (
    ApiError, ApiState, Namespace, json_object, options_dict, require_str, require_url, string_map,
)
from sandbox.api_cache import Cache
from sandbox.api_redirect import Redirect
from sandbox.factors import validate_factor, validate_factors
from sandbox.models import (
    AccessDeny, ChallengeWith, ChallengeWithAny, Command, PromptRender, SetResultUrl,
)
from sandbox.runner import ActionRequest
from sandbox.visible import TenantObject

__all__ = ["Api", "ApiError"]


class Access(Namespace):
    """`api.access`: deny the reset attempt."""

    __slots__ = ()
    _name = "api.access"
    _exports: ClassVar[frozenset[str]] = frozenset({"deny"})

    def deny(self, reason: Any) -> None:
        """Deny the reset attempt: the flow stops after this action. Raises ApiError unless `reason`
        is a string."""
        reason = require_str(reason, "api.access.deny: reason", empty_ok=True)
        self._state.issue(AccessDeny(action=self._state.request.action, reason=reason))


class Authentication(Namespace):
    """`api.authentication`: challenge the user with a second factor."""

    __slots__ = ()
    _name = "api.authentication"
    _exports: ClassVar[frozenset[str]] = frozenset(
        {"challenge_with", "challengeWith", "challenge_with_any", "challengeWithAny"}
    )

    def challenge_with(self, factor: Any, additional_factors: Any = None) -> None:
        """Challenge the user with `factor` (the user may pick one of `additional_factors` instead).
        Raises ApiError naming the first invalid factor (see sandbox.factors)."""
        chosen = validate_factor(factor, "api.authentication.challenge_with: factor")
        others = validate_factors(
            [] if additional_factors is None else additional_factors,
            "api.authentication.challenge_with: additional_factors",
        )
        action = self._state.request.action
        self._state.issue(ChallengeWith(action=action, factor=chosen, additional_factors=others))

    def challengeWith(self, factor: Any, options: Any = None) -> None:  # noqa: N802 - hosted name
        """`challenge_with`, hosted product's shape: challengeWith(factor, {additionalFactors})."""
        where = "api.authentication.challengeWith: options"
        opts = options_dict(options, where, ("additionalFactors",))
        self.challenge_with(factor, opts.get("additionalFactors"))

    def challenge_with_any(self, factors: Any) -> None:
        """Challenge the user with one of `factors` (a non-empty list), after a selection screen.
        Raises ApiError for an empty list or naming the first invalid factor."""
        where = "api.authentication.challenge_with_any: factors"
        chosen = validate_factors(factors, where)
        if not chosen:
            raise ApiError(f'{where} must list at least one factor, like [{{"type": "otp"}}]')
        self._state.issue(ChallengeWithAny(action=self._state.request.action, factors=chosen))

    def challengeWithAny(self, factors: Any) -> None:  # noqa: N802 - hosted name
        """Alias of `challenge_with_any`."""
        self.challenge_with_any(factors)


class Prompt(Namespace):
    """`api.prompt`: render a custom prompt."""

    __slots__ = ()
    _name = "api.prompt"
    _exports: ClassVar[frozenset[str]] = frozenset({"render"})

    def render(self, prompt_id: Any, fields: Any = None, vars: Any = None) -> None:
        """Render prompt `prompt_id` after this action returns; the answers come back as
        `event.prompt` in on_continue_post_challenge. `fields` and `vars` are JSON dicts.

        Raises ApiError for bad arguments, for a second prompt in this action, or when this action
        already redirected.
        """
        prompt_id = require_str(prompt_id, "api.prompt.render: prompt_id")
        field_data = json_object(fields, "api.prompt.render: fields")
        var_data = json_object(vars, "api.prompt.render: vars")
        state = self._state
        if state.prompted:
            raise ApiError(
                "api.prompt.render: this action already rendered a prompt; at most one per action"
            )
        if state.redirected:
            raise ApiError(
                "api.prompt.render: this action already called api.redirect.send_user_to; an "
                "action may either redirect or render a prompt, not both"
            )
        state.prompted = True
        state.issue(PromptRender(
            action=state.request.action, prompt_id=prompt_id, fields=field_data, vars=var_data,
        ))


class Transaction(Namespace):
    """`api.transaction`: where the user goes once the password is reset."""

    __slots__ = ()
    _name = "api.transaction"
    _exports: ClassVar[frozenset[str]] = frozenset({"set_result_url", "setResultUrl"})

    def set_result_url(self, url: Any, query: Any = None) -> None:
        """Send the user to `url` (absolute http(s)) with `query` (dict of str -> str) after the
        reset; the last call in the flow wins. Raises ApiError for a bad url or query."""
        url = require_url(url, "api.transaction.set_result_url: url")
        query_map = string_map(query, "api.transaction.set_result_url: query")
        self._state.issue(SetResultUrl(action=self._state.request.action, url=url, query=query_map))

    def setResultUrl(self, url: Any, options: Any = None) -> None:  # noqa: N802 - hosted name
        """`set_result_url` with the hosted product's shape: setResultUrl(url, {query})."""
        opts = options_dict(options, "api.transaction.setResultUrl: options", ("query",))
        self.set_result_url(url, opts.get("query"))


class Api(TenantObject):
    """The `api` object of one handler run. `commands` lists what it issued, in order."""

    __slots__ = (
        "_state", "_access", "_authentication", "_redirect", "_prompt", "_transaction", "_cache",
    )
    # SECURITY: `commands` is for the executor only: without this allow-list (enforced by
    # sandbox.guards) tenant code could read it and hold pydantic models (not TenantObjects).
    _exports: ClassVar[frozenset[str]] = frozenset(
        {"access", "authentication", "redirect", "prompt", "transaction", "cache"}
    )

    def __init__(self, request: ActionRequest) -> None:
        self._state = state = ApiState(request)
        self._access = Access(state)
        self._authentication = Authentication(state)
        self._redirect = Redirect(state)
        self._prompt = Prompt(state)
        self._transaction = Transaction(state)
        self._cache = Cache(state)

    def __repr__(self) -> str:
        return "api"

    @property
    def access(self) -> Access:
        return self._access

    @property
    def authentication(self) -> Authentication:
        return self._authentication

    @property
    def redirect(self) -> Redirect:
        return self._redirect

    @property
    def prompt(self) -> Prompt:
        return self._prompt

    @property
    def transaction(self) -> Transaction:
        return self._transaction

    @property
    def cache(self) -> Cache:
        return self._cache

    @property
    def commands(self) -> list[Command]:
        """Copies of the commands issued so far, in issue order. For the executor: tenant code
        cannot read it (see `_exports`), and copies keep what was issued unchangeable anyway."""
        return [command.model_copy(deep=True) for command in self._state.commands]
