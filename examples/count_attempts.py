"""Count password-reset attempts per user in the cache; deny once there were too many in an hour."""

MAX_ATTEMPTS = 3
WINDOW_MS = 60 * 60 * 1000


def on_execute_post_challenge(event, api):
    key = "reset-attempts:" + event.user.user_id
    record = api.cache.get(key)
    attempts = (int(record.value) if record else 0) + 1
    if attempts > MAX_ATTEMPTS:
        api.access.deny("Too many password reset attempts; try again later.")
        return
    # Keep the window's end: the first attempt starts it, later attempts don't extend it.
    expires_at = record.expires_at if record else None
    written = api.cache.set(key, str(attempts), ttl=WINDOW_MS, expires_at=expires_at)
    if written.type != "success":
        print("could not count this attempt: " + written.code)
    print("password reset attempt " + str(attempts) + " of " + str(MAX_ATTEMPTS))
