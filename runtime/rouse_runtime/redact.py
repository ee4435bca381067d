"""Credentials out of every message: what a URL's userinfo or a `password=` holds.

State URLs carry passwords (`redis://:secret@host:6379/0`) and errors quote the
URL they failed on; the errors become 503 bodies and log lines. The error
types that may quote one (StoreError, ConfigError) pass their message through
`redact`, so no caller can forget it.
"""

from __future__ import annotations

import re

# scheme://userinfo@ : the userinfo (user, or user:password) is replaced whole.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^@/\s'\"]*@")
# ?password=... or &password=... (redis-py accepts the password as a query parameter).
_PARAM = re.compile(r"(?i)(?P<key>\b(?:password|passwd|pwd|token)=)[^&\s'\"]*")
MASK = "***"


def redact(text: str) -> str:
    """`text` with every URL's userinfo and every password parameter masked."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _PARAM.sub(lambda m: f"{m['key']}{MASK}", text)
