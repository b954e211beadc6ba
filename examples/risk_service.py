"""A stand-in for the external risk service that risk_check_redirect.py sends users to.

It does what such a service does on its side of the redirect: verify the `session_token` the action
signed with the shared secret, decide, and send the browser back to /continue with the flow's `state`
and its verdict signed as `risk_token` (claims: sub, state, verdict, iat, exp).

    python examples/risk_service.py SUSPENDED_RESULT.json SECRETS.json [--verdict allow|deny] > continue.json

prints the /continue request ({state, query, body}) for `actionrunner run --resume ...`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import jwt


def continue_request(result: dict[str, Any], secret: str, verdict: str) -> dict[str, Any]:
    """The /continue request answering the redirect in the suspended `result` document."""
    redirect = next(c for c in result["commands"] if c["type"] == "redirect.send_user_to")
    session = jwt.decode(redirect["query"]["session_token"], secret, algorithms=["HS256"])
    now = int(time.time())
    state = redirect["query"]["state"]
    reply = {"sub": session["sub"], "state": state, "verdict": verdict, "iat": now, "exp": now + 300}
    return {"state": state, "query": {"risk_token": jwt.encode(reply, secret, algorithm="HS256")},
            "body": {}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result")
    parser.add_argument("secrets")
    parser.add_argument("--verdict", default="allow", choices=("allow", "deny"))
    args = parser.parse_args()
    with open(args.result, encoding="utf-8") as f:
        result = json.load(f)
    with open(args.secrets, encoding="utf-8") as f:
        secret = json.load(f)["RISK_CHECK_SECRET"]
    json.dump(continue_request(result, secret, args.verdict), sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
