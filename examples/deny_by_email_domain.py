"""Deny password resets for accounts on throw-away e-mail domains."""

BLOCKED_DOMAINS = ("mailinator.com", "guerrillamail.com", "10minutemail.com")


def on_execute_post_challenge(event, api):
    email = (event.user.email or "").lower()
    domain = email.rpartition("@")[2]
    if domain in BLOCKED_DOMAINS:
        print("blocked a password reset for a " + domain + " address")
        api.access.deny("Password resets are not available for " + domain + " addresses.")
