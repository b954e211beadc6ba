"""Factor selectors for `api.authentication` (SPEC section 3): `{"type": t, "options": {...}}`.

`push` is accepted as an alias and normalised to `push-notification`; a `phone` factor may say how
the code is sent with `options.preferred_method`. Anything else is an ApiError naming the bad value
and what is accepted.
"""

from __future__ import annotations

from typing import Any

from sandbox.api_base import ApiError, to_plain, type_name
from sandbox.models import FactorSelector

FACTOR_TYPES = (
    "otp", "email", "push-notification", "phone", "webauthn-platform", "webauthn-roaming",
    "recovery-code",
)
FACTOR_ALIASES = {"push": "push-notification"}
PHONE_METHODS = ("sms", "voice", "both")
_KEYS = ("type", "options")


def validate_factor(obj: Any, where: str = "factor") -> FactorSelector:
    """`obj` (a dict or event data) as a FactorSelector with its type normalised.

    Raises ApiError, naming `where` and the bad value, when `obj` is not a dict with a known `type`,
    has keys other than type/options, has options that are not a dict, or is a phone factor whose
    `options.preferred_method` is not one of sms, voice, both.
    """
    data = to_plain(obj, where)
    if type(data) is not dict:
        raise ApiError(f'{where} must be a dict like {{"type": "otp"}}, got {type_name(obj)}')
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ApiError(f"{where} has unknown key(s) {', '.join(unknown)}; accepted: type, options")
    kind = data.get("type")
    kind = FACTOR_ALIASES.get(kind, kind) if type(kind) is str else kind
    if kind not in FACTOR_TYPES:
        accepted = ", ".join(FACTOR_TYPES + tuple(FACTOR_ALIASES))
        raise ApiError(
            f"{where}['type'] is {data.get('type')!r:.100}, not a known factor; "
            f"accepted: {accepted}"
        )
    factor_options = data.get("options")
    if factor_options is not None and type(factor_options) is not dict:
        raise ApiError(
            f"{where}['options'] must be a dict or None, got {type(factor_options).__name__}"
        )
    if kind == "phone" and factor_options and "preferred_method" in factor_options:
        method = factor_options["preferred_method"]
        if method not in PHONE_METHODS:
            raise ApiError(
                f"{where}['options']['preferred_method'] is {method!r:.100}; "
                f"accepted: {', '.join(PHONE_METHODS)}"
            )
    return FactorSelector(type=kind, options=factor_options)


def validate_factors(objs: Any, where: str = "factors") -> list[FactorSelector]:
    """Each item of the list (or tuple) `objs` validated with `validate_factor`, in order.

    Raises ApiError when `objs` is not a list or tuple, or naming the index of the first bad factor.
    """
    if type(objs) in (list, tuple):
        return [validate_factor(obj, f"{where}[{index}]") for index, obj in enumerate(objs)]
    raise ApiError(
        f'{where} must be a list of factors like [{{"type": "otp"}}], got {type_name(objs)}'
    )
