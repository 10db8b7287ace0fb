"""The security batteries: every route against outsiders, CSRF, lockout, headers, hostile input."""
