"""What every server shares: kserve's ModelServer on uvloop, the request guard in front of it, the
v1/v2 bodies, readiness, one log format, and the errors a request is answered with."""
