"""Room codes: generated ones are easy to read aloud and too many to guess.

A generated code is 12 symbols of Crockford's base32 alphabet (no I, L, O or U, so nothing reads
as another symbol) in three dashed groups, e.g. ``K7M2-QX9P-4TRB``: 60 bits from the OS CSPRNG.
With a million live rooms, one guess finds one with probability 1e6 / 2**60, about 1 in 10**12.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS = 3
GROUP_SIZE = 4
ENTROPY_BITS = GROUPS * GROUP_SIZE * 5
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_code() -> str:
    return "-".join(
        "".join(secrets.choice(ALPHABET) for _ in range(GROUP_SIZE)) for _ in range(GROUPS)
    )


def canonical(code: object) -> str | None:
    """The room key for a client's code (codes compare case-insensitively), or None if invalid."""
    if not isinstance(code, str) or _VALID.fullmatch(code) is None:
        return None
    return code.upper()
