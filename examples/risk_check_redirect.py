"""Send the user to an external risk check; continue only if it answers with a signed "allow".

The risk service shares RISK_CHECK_SECRET with this action: it verifies our session_token, and signs
its verdict into the `risk_token` it hands back to /continue (with the flow's state and the user).
"""

RISK_CHECK_URL = "https://risk.example.com/password-reset"


def on_execute_post_challenge(event, api):
    token = api.redirect.encode_token(
        event.secrets.RISK_CHECK_SECRET,
        {"email": event.user.email, "country": event.request.geoip.country_code},
        300,
    )
    api.redirect.send_user_to(RISK_CHECK_URL, {"session_token": token})


def on_continue_post_challenge(event, api):
    verdict = api.redirect.validate_token(event.secrets.RISK_CHECK_SECRET, "risk_token")
    print("risk check verdict: " + str(verdict.get("verdict")))
    if verdict.get("verdict") != "allow":
        api.access.deny("The risk check did not clear this password reset.")
