"""Who may do what at a station: named bearer tokens, each with a role.

    operator   inspect, read the log, settle parts in the review queue (dispositions)
    engineer   all of that, and promote models

A tokens file holds one token per line, ``NAME ROLE sha256:HEX`` (``#`` starts a comment): only
the token's hash is stored, so the file lets no one in who reads it. ``castinspect token add``
makes a token, prints it once and appends its line. The station's single ``--token`` is an
engineer named ``token``. Without any token (loopback only) the caller is ``local``, an engineer.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from castinspect.station.review import Person

OPERATOR, ENGINEER = "operator", "engineer"
ROLES = (OPERATOR, ENGINEER)
MIN_TOKEN = 16  # characters: a blank or short token is a guessable one
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
LOCAL = Person("local", ENGINEER)


def digest(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.strip().encode()).hexdigest()


def check_token(token: str | None) -> None:
    if token is not None and len(token.strip()) < MIN_TOKEN:
        raise ValueError(f"the bearer token must be at least {MIN_TOKEN} characters (not blank): "
                         "e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'")


@dataclass(frozen=True)
class Tokens:
    """The tokens a station accepts: their hash -> the person."""

    people: dict[str, Person]

    @classmethod
    def of(cls, token: str | None = None, file: str | os.PathLike | None = None) -> "Tokens | None":
        """The single ``token`` (an engineer) and the tokens ``file``; None when there is neither
        (an open station, loopback only)."""
        people: dict[str, Person] = {}
        if token is not None:
            check_token(token)
            people[digest(token)] = Person("token", ENGINEER)
        if file is not None:
            people.update(read_tokens(file))
        return cls(people) if people else None

    def who(self, given: str) -> Person | None:
        """The person a presented token belongs to (compared in constant time), or None."""
        presented = digest(given)
        found = None
        for known, person in self.people.items():
            if hmac.compare_digest(presented.encode(), known.encode()):
                found = person
        return found


def read_tokens(file: str | os.PathLike) -> dict[str, Person]:
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such tokens file (castinspect token add NAME --file {path})")
    people: dict[str, Person] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ROLES or not NAME.match(parts[0]) or \
                not re.fullmatch(r"sha256:[0-9a-f]{64}", parts[2]):
            raise ValueError(f"{path}:{n}: expected 'NAME ROLE sha256:HEX' with ROLE operator or engineer")
        people[parts[2]] = Person(parts[0], parts[1])
    if not people:
        raise ValueError(f"{path}: no tokens in the file")
    return people


def add_token(file: str | os.PathLike, name: str, role: str) -> str:
    """Make a new token for ``name`` with ``role``, append its hash to ``file`` (created, readable
    by its owner only) and return the token: the only time it is seen."""
    if not NAME.match(name):
        raise ValueError(f"{name!r}: a name is 1-64 letters, digits, '_', '.', '@' or '-'")
    if role not in ROLES:
        raise ValueError(f"role must be operator or engineer, not {role!r}")
    path = Path(file)
    if path.is_file() and path.stat().st_size and name in {p.name for p in read_tokens(path).values()}:
        raise ValueError(f"{path}: {name} has a token already (remove its line to replace it)")
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as f:
        f.write(f"{name} {role} {digest(token)}\n")
    return token
