"""Users, workspaces memberships, sessions and API keys.

Passwords are argon2 hashes; session tokens and API keys are random 256-bit secrets stored
only as SHA-256 digests (shown once, never recoverable). An API key acts for its user in one
workspace with at most its own role.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from conveyor.engine.interfaces import ExecutionUser
from conveyor.errors import Conflict, Forbidden, InputError, NotFound
from conveyor.store.database import new_id
from conveyor.store.tables import api_keys, memberships, sessions, users, workspaces

if TYPE_CHECKING:
    from argon2 import PasswordHasher


@functools.cache
def _hasher() -> PasswordHasher:
    """Imported on first use: a worker never hashes a password."""
    from argon2 import PasswordHasher

    return PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this keeps unknown-email logins as slow as wrong-password ones
    (computed on first use: hashing costs memory every process should not pay)."""
    return _hasher().hash("conveyor-dummy-password")


KEY_PREFIX = "cvk_"
CSRF_LABEL = b"conveyor csrf token v1"
LAST_USED_GRANULARITY = timedelta(minutes=1)


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "member": 1, "admin": 2, "owner": 3}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user, with their role per workspace (one workspace for a key)."""

    user_id: str
    email: str
    is_admin: bool
    roles: dict[str, Role] = field(default_factory=dict)
    api_key_id: str | None = None
    touch: bool = False  # the key's last-used time is due for an update
    name: str = ""

    @property
    def user(self) -> ExecutionUser:
        """Who an execution this caller starts was started by (``execution.user``)."""
        return ExecutionUser(self.user_id, self.email, self.name)

    def role_in(self, workspace_id: str) -> Role | None:
        return self.roles.get(workspace_id)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_user(
    conn: Connection,
    email: str,
    password: str,
    now: datetime,
    *,
    name: str = "",
    is_admin: bool = False,
) -> str:
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InputError(f"'{email}' is not an email address")
    if len(password) < 8:
        raise InputError("a password has at least 8 characters")
    user_id = new_id()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(users),
                {
                    "id": user_id,
                    "email": email,
                    "name": name,
                    "password_hash": _hasher().hash(password),
                    "is_admin": is_admin,
                    "created_at": now,
                },
            )
    except IntegrityError:
        raise Conflict(f"a user with email {email} already exists") from None
    return user_id


def count_users(conn: Connection) -> int:
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def set_role(conn: Connection, user_id: str, workspace_id: str, role: Role, now: datetime) -> None:
    updated = conn.execute(
        update(memberships)
        .where(memberships.c.user_id == user_id, memberships.c.workspace_id == workspace_id)
        .values(role=role.value)
    ).rowcount
    if not updated:
        conn.execute(
            insert(memberships),
            {
                "user_id": user_id,
                "workspace_id": workspace_id,
                "role": role.value,
                "created_at": now,
            },
        )


def check_grant(actor: Role, current: Role | None, new: Role | None) -> None:
    """May ``actor`` change a member's role from ``current`` to ``new`` (None: not a
    member)? Only owners make, demote or remove owners."""
    if Role.OWNER in (current, new) and actor != Role.OWNER:
        raise Forbidden("only an owner can make, change or remove owners")


def check_key_role(actor: Role, role: Role) -> None:
    """A key acts with at most the role of the member who creates it."""
    if not actor.allows(role):
        raise Forbidden("a key cannot have a higher role than yours")


def user_id_by_email(conn: Connection, email: str) -> str | None:
    found = conn.execute(select(users.c.id).where(users.c.email == email.strip().lower())).scalar()
    return str(found) if found is not None else None


def list_members(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    """The workspace's members with their email, name and role, by email."""
    rows = conn.execute(
        select(
            users.c.id.label("user_id"),
            users.c.email,
            users.c.name,
            memberships.c.role,
            memberships.c.created_at,
        )
        .join(users, users.c.id == memberships.c.user_id)
        .where(memberships.c.workspace_id == workspace_id)
        .order_by(users.c.email)
    ).mappings()
    return [dict(r) for r in rows]


def member_role(conn: Connection, workspace_id: str, user_id: str) -> Role | None:
    found = conn.execute(
        select(memberships.c.role).where(
            memberships.c.workspace_id == workspace_id, memberships.c.user_id == user_id
        )
    ).scalar()
    return Role(found) if found is not None else None


def keep_an_owner(conn: Connection, workspace_id: str, user_id: str) -> None:
    """Refuse to demote or remove the workspace's last owner."""
    owners = conn.execute(
        select(memberships.c.user_id).where(
            memberships.c.workspace_id == workspace_id, memberships.c.role == Role.OWNER.value
        )
    ).scalars()
    if set(owners) == {user_id}:
        raise Conflict("a workspace keeps at least one owner; make another member owner first")


def remove_member(conn: Connection, workspace_id: str, user_id: str) -> None:
    """Take a user out of the workspace (their API keys for it stop working with it)."""
    keep_an_owner(conn, workspace_id, user_id)
    done = conn.execute(
        delete(memberships).where(
            memberships.c.workspace_id == workspace_id, memberships.c.user_id == user_id
        )
    ).rowcount
    if not done:
        raise NotFound(f"user '{user_id}' is not a member of this workspace")


def grant(
    conn: Connection, workspace_id: str, actor: Role, email: str, role: Role, now: datetime
) -> dict[str, Any]:
    """Add the user with ``email`` to the workspace with ``role``, or change their role,
    as a member whose role is ``actor`` (the API's PUT members and the settings page)."""
    user_id = user_id_by_email(conn, email)
    if user_id is None:
        raise NotFound(f"no user with email {email.strip()}; create the user first")
    current = member_role(conn, workspace_id, user_id)
    check_grant(actor, current, role)
    if current == Role.OWNER and role != Role.OWNER:
        keep_an_owner(conn, workspace_id, user_id)
    set_role(conn, user_id, workspace_id, role, now)
    return {"user_id": user_id, "email": email.strip().lower(), "role": role.value}


def ungrant(conn: Connection, workspace_id: str, actor: Role, user_id: str) -> None:
    """Remove a member, as a member whose role is ``actor``."""
    check_grant(actor, member_role(conn, workspace_id, user_id), None)
    remove_member(conn, workspace_id, user_id)


def authenticate(conn: Connection, email: str, password: str, now: datetime) -> str | None:
    """The user id for valid credentials, else None (same cost either way)."""
    row = conn.execute(
        select(users.c.id, users.c.password_hash, users.c.disabled).where(
            users.c.email == email.strip().lower()
        )
    ).first()
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        _hasher().verify(row.password_hash if row else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    conn.execute(update(users).where(users.c.id == row.id).values(last_login_at=now))
    return str(row.id)


def create_session(conn: Connection, user_id: str, now: datetime, ttl: timedelta) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(sessions),
        {
            "token_hash": digest(token),
            "user_id": user_id,
            "created_at": now,
            "expires_at": now + ttl,
        },
    )
    return token


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session, derived from it (nothing stored): the session's pages
    and scripts are given it, and a form posted from another site cannot know it (the
    session cookie is HttpOnly). State-changing requests made with the cookie carry it."""
    return hmac.new(session_token.encode(), CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(
        csrf_token(session_token).encode(), presented.encode()
    )


def end_session(conn: Connection, token: str) -> None:
    conn.execute(delete(sessions).where(sessions.c.token_hash == digest(token)))


def session_principal(conn: Connection, token: str, now: datetime) -> Principal | None:
    user_id = conn.execute(
        select(sessions.c.user_id).where(
            sessions.c.token_hash == digest(token), sessions.c.expires_at > now
        )
    ).scalar()
    return principal(conn, str(user_id)) if user_id is not None else None


def principal(conn: Connection, user_id: str) -> Principal | None:
    user = conn.execute(
        select(users.c.id, users.c.email, users.c.name, users.c.is_admin, users.c.disabled).where(
            users.c.id == user_id
        )
    ).first()
    if user is None or user.disabled:
        return None
    roles = {
        r.workspace_id: Role(r.role)
        for r in conn.execute(
            select(memberships.c.workspace_id, memberships.c.role).where(
                memberships.c.user_id == user_id
            )
        )
    }
    return Principal(user.id, user.email, user.is_admin, roles, name=user.name)


def create_api_key(
    conn: Connection, workspace_id: str, user_id: str, name: str, role: Role, now: datetime
) -> tuple[str, dict[str, Any]]:
    """Return the key (shown once) and its stored row (which never holds the key)."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = {
        "id": new_id(),
        "workspace_id": workspace_id,
        "user_id": user_id,
        "name": name,
        "prefix": prefix,
        "key_hash": digest(key),
        "role": role.value,
        "created_at": now,
    }
    conn.execute(insert(api_keys), row)
    return key, {k: v for k, v in row.items() if k != "key_hash"}


def api_key_principal(conn: Connection, key: str, now: datetime) -> Principal | None:
    """The principal of a valid, unrevoked key (a read; see :func:`touch_api_key`)."""
    parts = key.split("_", 2)  # the secret itself may contain "_"
    if len(parts) != 3 or f"{parts[0]}_" != KEY_PREFIX:
        return None
    row = conn.execute(
        select(api_keys).where(api_keys.c.prefix == parts[1], api_keys.c.revoked_at.is_(None))
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest(key)):
        return None
    user = principal(conn, row.user_id)
    member_role = user.role_in(row.workspace_id) if user else None
    if user is None or member_role is None:
        return None
    role = min(member_role, Role(row.role), key=lambda r: r.rank)
    stale = row.last_used_at is None or now - row.last_used_at > LAST_USED_GRANULARITY
    return Principal(
        user.user_id,
        user.email,
        False,
        {row.workspace_id: role},
        row.id,
        touch=stale,
        name=user.name,
    )


def touch_api_key(conn: Connection, key_id: str, now: datetime) -> None:
    """Record use, at most once per ``LAST_USED_GRANULARITY`` (so requests stay reads)."""
    conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now))


def list_api_keys(conn: Connection, workspace_id: str) -> list[dict[str, Any]]:
    rows = (
        conn.execute(
            select(
                api_keys.c.id,
                api_keys.c.name,
                api_keys.c.prefix,
                api_keys.c.role,
                api_keys.c.user_id,
                api_keys.c.created_at,
                api_keys.c.last_used_at,
                api_keys.c.revoked_at,
            )
            .where(api_keys.c.workspace_id == workspace_id)
            .order_by(api_keys.c.created_at)
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


def revoke_api_key(
    conn: Connection, workspace_id: str, actor: Role, key_id: str, now: datetime
) -> None:
    """Revoke a key, as a member whose role is ``actor``: an admin cannot revoke an owner's
    key (it could not have created it either)."""
    role = conn.execute(
        select(api_keys.c.role).where(
            api_keys.c.id == key_id, api_keys.c.workspace_id == workspace_id
        )
    ).scalar()
    if role is None:
        raise NotFound(f"API key '{key_id}' not found")
    if not actor.allows(Role(role)):
        raise Forbidden(f"only an owner can revoke a key with the role {role}")
    done = conn.execute(
        update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.workspace_id == workspace_id)
        .values(revoked_at=func.coalesce(api_keys.c.revoked_at, now))
    ).rowcount
    if not done:
        raise NotFound(f"API key '{key_id}' not found")


def find_workspace(conn: Connection, ref: str) -> dict[str, Any] | None:
    row = conn.execute(
        select(workspaces).where(or_(workspaces.c.id == ref, workspaces.c.name == ref))
    ).first()
    return dict(row._mapping) if row is not None else None


def execution_users(conn: Connection, user_ids: set[str]) -> dict[str, ExecutionUser]:
    """``execution.user`` of templates: who started each execution (a deleted user keeps
    their id, with no email)."""
    if not user_ids:
        return {}
    found = {
        u.id: ExecutionUser(u.id, u.email, u.name)
        for u in conn.execute(
            select(users.c.id, users.c.email, users.c.name).where(users.c.id.in_(user_ids))
        )
    }
    return {i: found.get(i) or ExecutionUser(i, "") for i in user_ids}


def set_max_running_per_user(conn: Connection, workspace_id: str, limit: int | None) -> None:
    """The running limit per user (None: none) for executions enqueued from now on; those
    already queued keep the limit they were enqueued with."""
    if limit is not None and limit < 1:
        raise InputError("max_running_per_user is at least 1 (or none)")
    conn.execute(
        update(workspaces).where(workspaces.c.id == workspace_id).values(max_running_per_user=limit)
    )


def set_outbound_allowlist(conn: Connection, workspace_id: str, entries: list[str]) -> None:
    """Where this workspace's steps may connect (empty: no list of its own)."""
    conn.execute(
        update(workspaces)
        .where(workspaces.c.id == workspace_id)
        .values(outbound_allowlist=list(entries) or None)
    )


def outbound_allowlist(conn: Connection, workspace_id: str) -> tuple[str, ...]:
    value = conn.execute(
        select(workspaces.c.outbound_allowlist).where(workspaces.c.id == workspace_id)
    ).scalar()
    return tuple(value or ())


def list_workspaces(conn: Connection, ids: list[str]) -> list[dict[str, Any]]:
    """The named workspaces (id and name), by name."""
    if not ids:
        return []
    rows = conn.execute(
        select(workspaces.c.id, workspaces.c.name)
        .where(workspaces.c.id.in_(ids))
        .order_by(workspaces.c.name)
    ).mappings()
    return [dict(r) for r in rows]


def all_workspace_ids(conn: Connection) -> list[str]:
    return [str(i) for i in conn.execute(select(workspaces.c.id)).scalars()]


LOCAL_OWNER_EMAIL = "owner@localhost"
NO_PASSWORD = "!"  # noqa: S105 (not an argon2 hash: no password can match it)
SIGNIN_LINK_TTL = timedelta(days=1)


def _link_hash(token: str) -> str:
    # Distinct from a session's digest: the link itself is not a session cookie.
    return digest(f"signin-link:{token}")


def create_local_owner(conn: Connection, workspace_id: str, now: datetime) -> str:
    """The owner a fresh local server creates: no password, signs in by one-time links."""
    user_id = new_id()
    conn.execute(
        insert(users),
        {
            "id": user_id,
            "email": LOCAL_OWNER_EMAIL,
            "name": "Local owner",
            "password_hash": NO_PASSWORD,
            "is_admin": True,
            "created_at": now,
        },
    )
    set_role(conn, user_id, workspace_id, Role.OWNER, now)
    return user_id


def passwordless_owner(conn: Connection) -> str | None:
    """The local owner's id while it has no password (it then signs in only by link)."""
    found = conn.execute(
        select(users.c.id).where(
            users.c.email == LOCAL_OWNER_EMAIL, users.c.password_hash == NO_PASSWORD
        )
    ).scalar()
    return str(found) if found is not None else None


def create_signin_link(conn: Connection, user_id: str, now: datetime) -> str:
    """A one-time sign-in token (kept as a digest, like sessions)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        insert(sessions),
        {
            "token_hash": _link_hash(token),
            "user_id": user_id,
            "created_at": now,
            "expires_at": now + SIGNIN_LINK_TTL,
        },
    )
    return token


def redeem_signin_link(conn: Connection, token: str, now: datetime) -> str | None:
    """The user of a valid link, which is used up; None when unknown, used or expired."""
    row = conn.execute(
        delete(sessions)
        .where(sessions.c.token_hash == _link_hash(token))
        .returning(sessions.c.user_id, sessions.c.expires_at)
    ).first()
    if row is None or row.expires_at <= now:
        return None
    conn.execute(update(users).where(users.c.id == row.user_id).values(last_login_at=now))
    return str(row.user_id)
