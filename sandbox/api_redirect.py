"""`api.redirect`: send the user to another site and check the token it sends back (SPEC section 3).

`encode_token` and `validate_token` compute locally (no command); `send_user_to` issues the
`redirect.send_user_to` command (the flow appends its `state` to the query later). A redirect and a
prompt exclude each other within one action.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sandbox import tokens
from sandbox.api_base import (
    ApiError, Namespace, json_object, options_dict, require_str, require_url, string_map,
)
from sandbox.models import SendUserTo

RESERVED_CLAIMS = ("iss", "sub", "iat", "exp", "ip")
INVALID_TOKEN = "The session token is invalid:"


class Redirect(Namespace):
    """`api.redirect`: encode_token, send_user_to, validate_token and their camelCase aliases."""

    __slots__ = ()
    _name = "api.redirect"
    _exports: ClassVar[frozenset[str]] = frozenset({
        "encode_token", "encodeToken", "send_user_to", "sendUserTo", "validate_token",
        "validateToken",
    })

    def encode_token(self, secret: Any, payload: Any, expires_in_seconds: Any = None) -> str:
        """An HS256 JWT signed with `secret`: claims iss (request hostname), sub (user id), iat
        (now, in seconds), exp (iat + `expires_in_seconds`, default 900), ip (request ip) and
        `payload`'s keys. Issues no command.

        Raises ApiError when `secret` is not a non-empty string, `payload` is not a JSON dict or
        uses a reserved claim name, or `expires_in_seconds` is not a positive int.
        """
        secret = require_str(secret, "api.redirect.encode_token: secret")
        claims = json_object(payload, "api.redirect.encode_token: payload")
        reserved = sorted(set(claims) & set(RESERVED_CLAIMS))
        if reserved:
            raise ApiError(
                f"api.redirect.encode_token: payload may not set {', '.join(reserved)} "
                f"(set from the event: {', '.join(RESERVED_CLAIMS)})"
            )
        request = self._state.request
        if expires_in_seconds is None:
            expires_in_seconds = request.limits.token_default_expiry_seconds
        if type(expires_in_seconds) is not int or expires_in_seconds <= 0:
            raise ApiError(
                "api.redirect.encode_token: expires_in_seconds must be a positive int (seconds), "
                f"got {expires_in_seconds!r:.100}"
            )
        issued_at = request.now_ms // 1000
        event_request = request.event.get("request") or {}
        registered = {
            "iss": event_request.get("hostname"),
            "sub": (request.event.get("user") or {}).get("user_id"),
            "iat": issued_at,
            "exp": issued_at + expires_in_seconds,
            "ip": event_request.get("ip"),
        }
        claims.update({name: value for name, value in registered.items() if value is not None})
        return tokens.encode_token(secret, claims)

    def encodeToken(self, options: Any = None) -> str:  # noqa: N802 - hosted name
        """`encode_token` with the hosted product's shape: {secret, payload, expiresInSeconds}."""
        where = "api.redirect.encodeToken: options"
        opts = options_dict(options, where, ("secret", "payload", "expiresInSeconds"))
        return self.encode_token(
            opts.get("secret"), opts.get("payload"), opts.get("expiresInSeconds")
        )

    def send_user_to(self, url: Any, query: Any = None) -> None:
        """Redirect the browser to `url` (absolute http(s)) with `query` (dict of str -> str) once
        this action returns; later actions wait for the resume.

        Raises ApiError for a bad url or query, or when this action already rendered a prompt.
        """
        url = require_url(url, "api.redirect.send_user_to: url")
        query_map = string_map(query, "api.redirect.send_user_to: query")
        state = self._state
        if state.prompted:
            raise ApiError(
                "api.redirect.send_user_to: this action already called api.prompt.render; an "
                "action may either redirect or render a prompt, not both"
            )
        state.redirected = True
        state.issue(SendUserTo(action=state.request.action, url=url, query=query_map))

    def sendUserTo(self, url: Any, options: Any = None) -> None:  # noqa: N802 - hosted name
        """`send_user_to` with the hosted product's shape: sendUserTo(url, {query})."""
        opts = options_dict(options, "api.redirect.sendUserTo: options", ("query",))
        self.send_user_to(url, opts.get("query"))

    def validate_token(
        self, secret: Any, token_parameter_name: Any = "session_token"
    ) -> dict[str, Any]:
        """While resuming: the claims of the token in the continue request's query (else body) under
        `token_parameter_name`, once its HS256 signature by `secret`, its exp, its `state` (the
        continue request's) and its `sub` (the user) all check out. Issues no command.

        Raises ApiError: outside a resume, for bad arguments, and for any failed check with a
        message starting "The session token is invalid:" that names the check.
        """
        secret = require_str(secret, "api.redirect.validate_token: secret")
        name = require_str(
            token_parameter_name, "api.redirect.validate_token: token_parameter_name"
        )
        request = self._state.request
        resumed = request.continue_request
        if resumed is None:
            raise ApiError(
                "api.redirect.validate_token can only be called while resuming after a redirect "
                "(in on_continue_post_challenge)"
            )
        query, body = resumed.get("query") or {}, resumed.get("body") or {}
        token = query.get(name) if name in query else body.get(name)
        if token is None:
            raise ApiError(f"{INVALID_TOKEN} missing token (no {name!r} in the query or body)")
        try:
            return tokens.validate_token(
                token, secret, now_ms=request.now_ms, state=resumed.get("state"),
                subject=(request.event.get("user") or {}).get("user_id"),
            )
        except tokens.TokenInvalid as exc:
            raise ApiError(f"{INVALID_TOKEN} {exc}") from None

    def validateToken(self, options: Any = None) -> dict[str, Any]:  # noqa: N802 - hosted name
        """`validate_token` with the hosted product's shape: {secret, tokenParameterName}."""
        where = "api.redirect.validateToken: options"
        opts = options_dict(options, where, ("secret", "tokenParameterName"))
        return self.validate_token(
            opts.get("secret"), opts.get("tokenParameterName", "session_token")
        )
