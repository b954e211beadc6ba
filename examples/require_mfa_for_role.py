"""Administrators must pass an MFA challenge, with any factor they enrolled, before the reset."""

PRIVILEGED_ROLES = ("admin", "billing-admin")


def on_execute_post_challenge(event, api):
    roles = event.authorization.roles or ()
    if not [role for role in roles if role in PRIVILEGED_ROLES]:
        return
    factors = [{"type": factor.type} for factor in (event.user.enrolled_factors or ())]
    if not factors:
        api.access.deny("Administrators must enroll an MFA factor before resetting a password.")
        return
    print("challenging an administrator with " + str(len(factors)) + " enrolled factor(s)")
    api.authentication.challenge_with_any(factors)
