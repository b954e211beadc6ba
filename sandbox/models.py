"""The data that crosses a boundary, as pydantic models.

Three boundaries: the orchestrator's job (event in, result document out: SPEC sections 2 and 4), the
jail (what a jailed child is asked to do and what it may answer), and the resume state. Every command
is one member of a discriminated union on `type`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from sandbox.errors import InvalidEvent

# --------------------------------------------------------------------------------------------------
# The event (SPEC section 2). Snake_case is canonical; the hosted product's camelCase is accepted on
# submission; unknown fields are kept.


class EventPart(BaseModel):
    """Base of every part of the event: camelCase accepted, unknown fields kept."""

    model_config = ConfigDict(
        extra="allow", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
        loc_by_alias=False,
    )


class Factor(EventPart):
    type: str
    options: dict[str, Any] | None = None


class User(EventPart):
    user_id: str
    email: str | None = None
    email_verified: bool | None = None
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    nickname: str | None = None
    username: str | None = None
    picture: str | None = None
    phone_number: str | None = None
    phone_verified: bool | None = None
    created_at: str | None = None
    updated_at: str | None = None
    last_password_reset: str | None = None
    app_metadata: dict[str, Any] = Field(default_factory=dict)
    user_metadata: dict[str, Any] = Field(default_factory=dict)
    enrolled_factors: list[Factor] | None = None
    identities: list[dict[str, Any]] = Field(default_factory=list)


class GeoIp(EventPart):
    city_name: str | None = None
    country_code: str | None = None
    country_code3: str | None = None
    country_name: str | None = None
    continent_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    subdivision_code: str | None = None
    subdivision_name: str | None = None
    time_zone: str | None = None


class Request(EventPart):
    ip: str | None = None
    method: str | None = None
    hostname: str | None = None
    user_agent: str | None = None
    language: str | None = None
    query: dict[str, Any] = Field(default_factory=dict)
    body: dict[str, Any] = Field(default_factory=dict)
    geoip: GeoIp = Field(default_factory=GeoIp)


class Transaction(EventPart):
    correlation_id: str | None = None
    locale: str | None = None
    login_hint: str | None = None
    state: str | None = None
    ui_locales: list[str] | None = None


class AuthenticationMethod(EventPart):
    name: str
    timestamp: str | None = None


class Authentication(EventPart):
    methods: list[AuthenticationMethod] = Field(default_factory=list)


class Client(EventPart):
    client_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Connection(EventPart):
    id: str | None = None
    name: str | None = None
    strategy: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class Organization(EventPart):
    id: str | None = None
    name: str | None = None
    display_name: str | None = None
    metadata: dict[str, Any] | None = None


class Tenant(EventPart):
    id: str | None = None


class Authorization(EventPart):
    roles: list[str] = Field(default_factory=list)


class Stats(EventPart):
    logins_count: int | None = None


class PromptAnswer(EventPart):
    """`event.prompt`: present only when resuming after `api.prompt.render`."""

    id: str
    fields: dict[str, Any] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)


class Event(EventPart):
    """The trigger's event as submitted by the orchestrator (without `secrets` and `prompt`, which the
    flow adds per action)."""

    user: User
    request: Request = Field(default_factory=Request)
    transaction: Transaction = Field(default_factory=Transaction)
    authentication: Authentication = Field(default_factory=Authentication)
    client: Client = Field(default_factory=Client)
    connection: Connection = Field(default_factory=Connection)
    organization: Organization | None = None
    tenant: Tenant = Field(default_factory=Tenant)
    authorization: Authorization = Field(default_factory=Authorization)
    stats: Stats = Field(default_factory=Stats)


def parse_event(data: Any, *, source: str = "event") -> Event:
    """Validate a submitted event. Raises InvalidEvent naming the first bad field's dotted path."""
    try:
        return Event.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise InvalidEvent(first["msg"], source=source, field=field) from None


def event_to_dict(event: Event) -> dict[str, Any]:
    """The event as plain JSON data under the snake_case names, unknown fields included."""
    return event.model_dump(mode="json", by_alias=False)


# --------------------------------------------------------------------------------------------------
# Commands (SPEC section 4). `action` is the name of the action that issued the command.


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: str


class FactorSelector(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal[
        "otp", "email", "push-notification", "phone", "webauthn-platform", "webauthn-roaming",
        "recovery-code",
    ]
    options: dict[str, Any] | None = None


class AccessDeny(_Command):
    type: Literal["access.deny"] = "access.deny"
    reason: str


class ChallengeWith(_Command):
    type: Literal["authentication.challenge_with"] = "authentication.challenge_with"
    factor: FactorSelector
    additional_factors: list[FactorSelector] = Field(default_factory=list)


class ChallengeWithAny(_Command):
    type: Literal["authentication.challenge_with_any"] = "authentication.challenge_with_any"
    factors: list[FactorSelector]


class SendUserTo(_Command):
    type: Literal["redirect.send_user_to"] = "redirect.send_user_to"
    url: str
    query: dict[str, Any] = Field(default_factory=dict)


class PromptRender(_Command):
    type: Literal["prompt.render"] = "prompt.render"
    prompt_id: str
    fields: dict[str, Any] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)


class SetResultUrl(_Command):
    type: Literal["transaction.set_result_url"] = "transaction.set_result_url"
    url: str
    query: dict[str, Any] = Field(default_factory=dict)


class CacheSet(_Command):
    type: Literal["cache.set"] = "cache.set"
    key: str
    value: str
    expires_at: int  # ms since the epoch


class CacheDelete(_Command):
    type: Literal["cache.delete"] = "cache.delete"
    key: str


Command = Annotated[
    Union[
        AccessDeny, ChallengeWith, ChallengeWithAny, SendUserTo, PromptRender, SetResultUrl,
        CacheSet, CacheDelete,
    ],
    Field(discriminator="type"),
]

SUSPENDING_COMMANDS = (
    "authentication.challenge_with", "authentication.challenge_with_any", "redirect.send_user_to",
    "prompt.render",
)

# --------------------------------------------------------------------------------------------------
# The result document (SPEC section 4).

Status = Literal["completed", "denied", "suspended", "failed"]
Outcome = Literal[
    "ok", "error", "timeout", "cpu_limit", "memory_limit", "output_too_large", "violation", "crashed"
]


class LogEntry(BaseModel):
    action: str
    message: str


class ActionReport(BaseModel):
    """One action that ran: how it ended and what it cost."""

    name: str
    version: int | None = None
    outcome: Outcome
    wall_ms: float
    cpu_ms: float
    peak_memory_kb: int


class ErrorInfo(BaseModel):
    """Why an execution failed: the action, the error's type, message and line (when known)."""

    action: str
    type: str
    message: str
    line: int | None = None


class ResumeInfo(BaseModel):
    """What the orchestrator hands back to resume a suspended flow."""

    state: str | None
    token: str  # opaque and tamper-evident; see sandbox.resume


class Result(BaseModel):
    """The one JSON document a job returns."""

    status: Status
    commands: list[Command] = Field(default_factory=list)
    logs: list[LogEntry] = Field(default_factory=list)
    actions: list[ActionReport] = Field(default_factory=list)
    error: ErrorInfo | None = None
    resume: ResumeInfo | None = None


class ContinueRequest(BaseModel):
    """The `/continue` request that resumes a suspended flow: its `state`, `query` and `body`."""

    state: str | None = None
    query: dict[str, Any] = Field(default_factory=dict)
    body: dict[str, Any] = Field(default_factory=dict)


class Diagnostic(BaseModel):
    """One compile problem: where (1-based line, 0-based column) and what."""

    line: int
    column: int
    message: str
    kind: Literal["syntax", "policy", "import", "size", "encoding", "missing_handler", "limit"]


class JobInput(BaseModel):
    """What the orchestrator submits: a new execution, or the resume of a suspended one."""

    model_config = ConfigDict(extra="forbid")
    tenant: str
    event: Event
    execution_id: str | None = None
    resume: ResumeInfo | None = None
    continue_request: ContinueRequest | None = None


# --------------------------------------------------------------------------------------------------
# The jail boundary: what one jailed child runs and the only thing it may answer.

Handler = Literal["on_execute_post_challenge", "on_continue_post_challenge"]


class CacheRecord(BaseModel):
    value: str
    expires_at: int  # ms since the epoch


class ActionOutput(BaseModel):
    """What a jailed child writes back after running one handler. Parsed strictly by the parent."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["ok", "error", "violation", "memory_limit", "output_too_large"]
    commands: list[Command] = Field(default_factory=list)
    console: str = ""
    console_dropped_bytes: int = 0
    error: ErrorInfo | None = None
