"""Who is calling: local accounts and API tokens, login sessions and the login throttle,
OpenID Connect, logging in and out (exchange.identity.login), and the watch for
credentials revoked by other processes."""
