"""Sign-in for holders: argon2 password hashes, opaque tokens stored as HMAC digests (a session cookie
for the pages, a bearer token for the API), sign-in rate limiting and lockout with a notification, and
password reset by a one-time code to the holder's mobile.

All blocking SQL: the API calls it from worker threads. Passwords and codes live only in memory; a
stolen table yields hashes and digests, never a working token or code."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

import notify
from holders import Actor, BadInput, CodeSender, Registry
from holders import codes as holder_codes
from holders.profile import check_email, email_key
from web.sql import attempts, logins, resets, tokens

log = structlog.get_logger("web.auth")

SESSION_MS = 12 * 3_600_000
BEARER_MS = 30 * 86_400_000
MAX_FAILURES = 5                 # wrong passwords in a row lock the sign-in ...
LOCK_MS = 15 * 60_000            # ... for this long, and the holder is told
CLIENT_WINDOW_MS = 15 * 60_000
CLIENT_MAX_FAILURES = 20         # wrong sign-ins from one address in the window: refused for a while
RESET_TTL_MS = 15 * 60_000
RESET_MAX_WRONG = 5
RESETS_PER_HOUR = 3
SIGNUP_ACTOR = Actor.support("web-signup")
DEFAULT_LOW_BALANCE = 500        # a new holder's accounts alert under $5.00 until they change it


class AuthError(Exception):
    """Sign-in refused; the message is a plain sentence that tells nothing about which part was wrong."""


class Locked(AuthError):
    pass


class TooMany(AuthError):
    pass


@dataclass(frozen=True)
class Session:
    holder_id: str
    kind: str                    # session | bearer
    csrf: str                    # sessions: the CSRF token the forms and X-CSRF-Token must carry
    expires_ts: int


def digest(pepper: bytes, token: str) -> str:
    """HMAC-SHA256 under web_secret: the table alone neither opens nor confirms a token."""
    return hmac.new(pepper, token.encode(), hashlib.sha256).hexdigest()


def check_password(password: str) -> str:
    if not isinstance(password, str) or not 10 <= len(password) <= 200:
        raise BadInput("the password must be 10 to 200 characters")
    if len(set(password)) < 4:
        raise BadInput("the password is too simple: use more different characters")
    return password


class Auth:
    def __init__(self, engine: Engine, registry: Registry, *, web_secret: str, code_secret: str,
                 sender: CodeSender | None, hasher: PasswordHasher | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if len(web_secret.encode()) < 16:
            raise ValueError("web_secret must be set (at least 16 bytes)")
        self.pepper = web_secret.encode()
        self.engine = engine
        self.registry = registry
        self.code_secret = code_secret
        self.sender = sender
        self.hasher = hasher or PasswordHasher()
        self.clock = clock
        self._dummy = self.hasher.hash(secrets.token_hex(16))   # wrong emails cost the same time

    def now(self) -> int:
        return int(self.clock() * 1000)

    # --- sign up ---------------------------------------------------------------------------------
    def sign_up(self, *, name: str, email: str, mobile: str, password: str, language: str,
                time_zone: str) -> str:
        """A new holder (holders' own checks) with its password hash; returns the holder id."""
        check_password(password)
        key = email_key(check_email(email))
        with self.engine.connect() as conn:
            if conn.execute(select(logins.c.holder_id).where(logins.c.email_key == key)).first():
                raise BadInput("that email address already has an account: sign in or reset the password")
        pw_hash = self.hasher.hash(password)
        holder = self.registry.create(SIGNUP_ACTOR, name=name, email=email, mobile=mobile,
                                      language=language, time_zone=time_zone)
        now = self.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(logins).values(
                    holder_id=holder.holder_id, email_key=key, password_hash=pw_hash, failures=0,
                    locked_until=0, low_balance_cents=DEFAULT_LOW_BALANCE, created_ts=now, updated_ts=now))
        except IntegrityError:
            raise BadInput("that email address already has an account") from None
        log.info("web_signed_up", holder_id=holder.holder_id)
        return holder.holder_id

    # --- sign in ---------------------------------------------------------------------------------
    def sign_in(self, email: str, password: str, client: str) -> str:
        """The holder id, or AuthError / Locked / TooMany. Every attempt is recorded (no password)."""
        key = email_key(email) if isinstance(email, str) else ""
        now = self.now()
        with self.engine.connect() as conn:
            recent = conn.execute(select(func.count()).where(
                attempts.c.client == client[:64], attempts.c.ok == 0,
                attempts.c.ts > now - CLIENT_WINDOW_MS)).scalar_one()
            row = conn.execute(select(logins).where(logins.c.email_key == key)).first()
        if recent >= CLIENT_MAX_FAILURES:
            raise TooMany("too many sign-in attempts from here: wait 15 minutes and try again")
        if row is not None and row.locked_until > now:
            self._record(client, key, ok=False)
            raise Locked("this sign-in is locked for a few minutes after several wrong passwords; "
                         "wait or reset the password")
        ok = self._verify(row.password_hash if row is not None else self._dummy, password)
        if row is None or not ok:
            self._record(client, key, ok=False)
            if row is not None:
                self._failed(row.holder_id)
            raise AuthError("the email or the password is wrong")
        holder = self.registry.get(Actor.holder(row.holder_id), row.holder_id)
        if holder.status != "active":
            self._record(client, key, ok=False)
            raise AuthError("this account is not active: call customer service")
        self._record(client, key, ok=True)
        with self.engine.begin() as conn:
            conn.execute(update(logins).where(logins.c.holder_id == row.holder_id)
                         .values(failures=0, locked_until=0))
        if self.hasher.check_needs_rehash(row.password_hash):
            self._set_password(row.holder_id, password)
        return str(row.holder_id)

    def _verify(self, stored: str, password: str) -> bool:
        try:
            return bool(self.hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    def _record(self, client: str, key: str, *, ok: bool) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(attempts).values(attempt_id="a_" + secrets.token_hex(10),
                                                 client=client[:64], email_key=key[:254], ok=int(ok),
                                                 ts=self.now()))

    def _failed(self, holder_id: str) -> None:
        """Count a wrong password; the fifth in a row locks the sign-in and tells the holder (one
        notify event per lock, in the same transaction)."""
        now = self.now()
        holder = self.registry.get(Actor.holder(holder_id), holder_id)   # before the write lock (SQLite)
        with self.engine.begin() as conn:
            row = conn.execute(select(logins.c.failures).where(logins.c.holder_id == holder_id)
                               .with_for_update()).one()
            failures = row.failures + 1
            if failures < MAX_FAILURES:
                conn.execute(update(logins).where(logins.c.holder_id == holder_id).values(failures=failures))
                return
            conn.execute(update(logins).where(logins.c.holder_id == holder_id)
                         .values(failures=0, locked_until=now + LOCK_MS))
            notify.enqueue(conn, notify.Event(
                kind="signin_locked", dedupe_key=f"web-lock-{holder_id}-{now}", holder_id=holder_id,
                number_e164=holder.mobile, payload={"at_ms": now}, language=holder.language,
                time_zone=holder.time_zone))
        log.warning("web_signin_locked", holder_id=holder_id)

    # --- tokens ----------------------------------------------------------------------------------
    def _hash(self, token: str) -> str:
        return digest(self.pepper, token)

    def issue(self, holder_id: str, kind: str) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32) if kind == "session" else ""
        now = self.now()
        expires = now + (SESSION_MS if kind == "session" else BEARER_MS)
        with self.engine.begin() as conn:
            conn.execute(insert(tokens).values(token_hash=self._hash(token), holder_id=holder_id, kind=kind,
                                               csrf=csrf, created_ts=now, expires_ts=expires, revoked=0))
        return token, Session(holder_id, kind, csrf, expires)

    def resolve(self, token: str, kind: str) -> Session | None:
        if not token or len(token) > 100:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(tokens).where(tokens.c.token_hash == self._hash(token),
                                                    tokens.c.kind == kind)).first()
        if row is None or row.revoked or row.expires_ts <= self.now():
            return None
        return Session(row.holder_id, row.kind, row.csrf, int(row.expires_ts))

    def revoke(self, token: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.token_hash == self._hash(token)).values(revoked=1))

    # --- password reset --------------------------------------------------------------------------
    def reset_start(self, email: str) -> None:
        """Send a code to the holder's mobile. Says nothing about whether the email exists."""
        secret = holder_codes.check_secret(self.code_secret)
        if self.sender is None:
            from holders import Unavailable
            raise Unavailable("password reset is not available: no code sender is configured")
        key = email_key(email) if isinstance(email, str) else ""
        now = self.now()
        with self.engine.begin() as conn:
            row = conn.execute(select(logins.c.holder_id).where(logins.c.email_key == key)
                               .with_for_update()).first()
            if row is None:
                return
            sent = conn.execute(select(func.count()).where(
                resets.c.holder_id == row.holder_id, resets.c.created_ts > now - 3_600_000)).scalar_one()
            if sent >= RESETS_PER_HOUR:
                log.info("web_reset_rate_limited", holder_id=row.holder_id)
                return
            conn.execute(update(resets).where(resets.c.holder_id == row.holder_id,
                                              resets.c.status == "pending").values(status="superseded"))
            code, salt = holder_codes.new_code(), holder_codes.new_salt()
            reset_id = "r_" + secrets.token_hex(10)
            conn.execute(insert(resets).values(
                reset_id=reset_id, holder_id=row.holder_id, salt=salt,
                digest=holder_codes.digest(secret, salt, reset_id, code), status="pending", attempts=0,
                created_ts=now, expires_ts=now + RESET_TTL_MS))
            holder_id = str(row.holder_id)
        holder = self.registry.get(Actor.holder(holder_id), holder_id)
        try:
            self.sender.deliver(holder.mobile, code, "sms", holder.language)
        except Exception as exc:
            with self.engine.begin() as conn:
                conn.execute(update(resets).where(resets.c.reset_id == reset_id).values(status="failed"))
            log.warning("web_reset_undelivered", holder_id=holder_id, error=type(exc).__name__)
            return
        log.info("web_reset_sent", holder_id=holder_id, reset_id=reset_id)

    def reset_finish(self, email: str, code: str, password: str) -> None:
        """Set a new password with the newest pending code; every session and token is revoked."""
        check_password(password)
        secret = holder_codes.check_secret(self.code_secret)
        key = email_key(email) if isinstance(email, str) else ""
        now = self.now()
        wrong = AuthError("the code is wrong or has expired: ask for a new one")
        with self.engine.begin() as conn:
            login = conn.execute(select(logins.c.holder_id).where(logins.c.email_key == key)).first()
            if login is None:
                raise wrong
            row = conn.execute(select(resets).where(resets.c.holder_id == login.holder_id,
                                                    resets.c.status == "pending")
                               .order_by(resets.c.created_ts.desc()).limit(1).with_for_update()).first()
            if row is None or row.expires_ts <= now:
                raise wrong
            if not holder_codes.matches(secret, row.salt, row.reset_id, code, row.digest):
                tries = row.attempts + 1
                conn.execute(update(resets).where(resets.c.reset_id == row.reset_id).values(
                    attempts=tries, status="locked" if tries >= RESET_MAX_WRONG else "pending"))
                ok = False
            else:
                conn.execute(update(resets).where(resets.c.reset_id == row.reset_id).values(status="used"))
                conn.execute(update(logins).where(logins.c.holder_id == login.holder_id).values(
                    password_hash=self.hasher.hash(password), failures=0, locked_until=0, updated_ts=now))
                conn.execute(update(tokens).where(tokens.c.holder_id == login.holder_id).values(revoked=1))
                ok = True
        if not ok:                   # raised after the commit: the attempt is counted
            raise wrong
        log.info("web_password_reset", holder_id=login.holder_id)

    def _set_password(self, holder_id: str, password: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(logins).where(logins.c.holder_id == holder_id)
                         .values(password_hash=self.hasher.hash(password), updated_ts=self.now()))

    # --- the threshold for accounts verified later (the rest of the alert settings: web/alerting.py) -
    def low_balance_default(self, holder_id: str) -> int:
        with self.engine.connect() as conn:
            row = conn.execute(select(logins.c.low_balance_cents)
                               .where(logins.c.holder_id == holder_id)).first()
        return DEFAULT_LOW_BALANCE if row is None else int(row[0])

    def set_low_balance_default(self, holder_id: str, cents: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(logins).where(logins.c.holder_id == holder_id)
                         .values(low_balance_cents=cents, updated_ts=self.now()))

    def purge_attempts(self, older_than_ms: int) -> int:
        """Old sign-in attempts are only for the rate limit: drop them."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(attempts).where(attempts.c.ts < older_than_ms)).rowcount or 0)
