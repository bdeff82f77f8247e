"""Console accounts on a real SQLite store: passwords, codes, lockout, sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import Engine, select

from proxy.console import accounts, sessions
from proxy.console.accounts import REFUSED, SignInRefused, sign_in
from proxy.console.models import ConsoleSignIn, ConsoleUser
from proxy.store import migrate
from proxy.store.engine import make_engine, session

NOW = datetime(2026, 11, 30, 10, 0, 5, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    migrate.upgrade(made)
    return made


def add(engine: Engine, name: str, role: str) -> str | None:
    with session(engine) as s:
        user, _uri = accounts.add_user(s, name, role, PASSWORD, NOW)
        return user.totp_secret


def code(secret: str | None, when: datetime = NOW) -> str:
    assert secret is not None
    return pyotp.TOTP(secret).at(when)


def test_staff_sign_in_with_the_password_alone(engine: Engine) -> None:
    """Teaching staff only ask for unblocks: no second factor is asked of them."""
    assert add(engine, "j.meer", "staff") is None
    assert sign_in(engine, "j.meer", PASSWORD, "", NOW).role == "staff"


@pytest.mark.parametrize("role", ["technician", "approver", "dsl", "reviewer", "governor"])
def test_every_other_role_needs_the_code(engine: Engine, role: str) -> None:
    """The right password without the right code is refused for every role but staff."""
    secret = add(engine, "someone", role)
    for wrong in ("", "000000", code(secret, NOW - timedelta(minutes=5))):
        with pytest.raises(SignInRefused, match=REFUSED):
            sign_in(engine, "someone", PASSWORD, wrong, NOW)
    assert sign_in(engine, "someone", PASSWORD, code(secret), NOW).role == role


def test_a_code_is_accepted_once(engine: Engine) -> None:
    """A code seen once (read over a shoulder, replayed) is refused the second time."""
    secret = add(engine, "head", "approver")
    sign_in(engine, "head", PASSWORD, code(secret), NOW)
    with pytest.raises(SignInRefused):
        sign_in(engine, "head", PASSWORD, code(secret), NOW + timedelta(seconds=5))
    later = NOW + timedelta(seconds=30)
    assert sign_in(engine, "head", PASSWORD, code(secret, later), later).name == "head"


def test_unknown_names_and_wrong_passwords_get_the_same_answer(engine: Engine) -> None:
    """The refusal does not say whether the name exists."""
    add(engine, "j.meer", "staff")
    answers = set()
    for name, password in (("nobody", PASSWORD), ("j.meer", "wrong password!")):
        with pytest.raises(SignInRefused) as refused:
            sign_in(engine, name, password, "", NOW)
        answers.add(str(refused.value))
    assert answers == {REFUSED}


def test_five_failures_lock_the_account_for_fifteen_minutes(engine: Engine) -> None:
    """After the fifth failure even the right password is refused, until the lock ends."""
    add(engine, "j.meer", "staff")
    for _ in range(accounts.LOCK_AFTER):
        with pytest.raises(SignInRefused):
            sign_in(engine, "j.meer", "guess guess guess", "", NOW)
    with pytest.raises(SignInRefused, match="locked"):
        sign_in(engine, "j.meer", PASSWORD, "", NOW + timedelta(minutes=1))
    after = NOW + accounts.LOCK_FOR + timedelta(seconds=1)
    assert sign_in(engine, "j.meer", PASSWORD, "", after).name == "j.meer"


def test_many_failures_from_one_address_are_throttled(engine: Engine) -> None:
    """Guessing across many names from one address is stopped, even for a real account."""
    add(engine, "j.meer", "staff")
    for n in range(accounts.ADDRESS_LIMIT):
        with pytest.raises(SignInRefused):
            sign_in(engine, f"name{n}", "guess guess guess", "", NOW, address="10.1.1.1")
    with pytest.raises(SignInRefused, match="this address"):
        sign_in(engine, "j.meer", PASSWORD, "", NOW, address="10.1.1.1")
    assert sign_in(engine, "j.meer", PASSWORD, "", NOW, address="10.1.1.2").name == "j.meer"


def test_every_attempt_is_recorded(engine: Engine) -> None:
    """The sign-in log keeps failures (with why) and successes, with the address."""
    add(engine, "j.meer", "staff")
    with pytest.raises(SignInRefused):
        sign_in(engine, "j.meer", "wrong password!", "", NOW, address="10.2.2.2")
    sign_in(engine, "j.meer", PASSWORD, "", NOW, address="10.2.2.2", via="cli")
    with session(engine) as s:
        rows = [(r.ok, r.reason, r.address, r.via) for r in s.scalars(select(ConsoleSignIn))]
    assert rows == [
        (False, "wrong password", "10.2.2.2", "console"),
        (True, "signed in", "10.2.2.2", "cli"),
    ]


def test_passwords_are_argon2_hashes(engine: Engine) -> None:
    """The store holds an argon2id hash, never the password."""
    add(engine, "j.meer", "staff")
    with session(engine) as s:
        stored = s.scalars(select(ConsoleUser.password_hash)).one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_a_short_password_or_unknown_role_is_refused(engine: Engine) -> None:
    """Accounts need a password of ten characters and a known role."""
    with session(engine) as s, pytest.raises(accounts.AccountError, match="10 characters"):
        accounts.add_user(s, "a", "staff", "short", NOW)
    with session(engine) as s, pytest.raises(accounts.AccountError, match="unknown role"):
        accounts.add_user(s, "a", "admin", PASSWORD, NOW)


def test_sessions_end_when_idle_or_too_old_or_signed_out(engine: Engine) -> None:
    """A session lasts while used, ends after 30 idle minutes or 8 hours, or at sign-out."""
    add(engine, "j.meer", "staff")
    who = sign_in(engine, "j.meer", PASSWORD, "", NOW)
    with session(engine) as s:
        token = sessions.start(s, who, NOW)
    now = NOW
    for _ in range(20):  # used every 25 minutes: never idle, but 8 hours run out
        now += timedelta(minutes=25)
        with session(engine) as s:
            found = sessions.resume(s, token, now)
        if now - NOW > sessions.ABSOLUTE:
            assert found is None
            break
        assert found is not None
        assert found.person.name == "j.meer"
    with session(engine) as s:
        token = sessions.start(s, who, NOW)
    with session(engine) as s:
        assert sessions.resume(s, token, NOW + timedelta(minutes=31)) is None
    with session(engine) as s:
        token = sessions.start(s, who, NOW)
        sessions.end(s, token)
    with session(engine) as s:
        assert sessions.resume(s, token, NOW) is None
        assert sessions.resume(s, "made-up", NOW) is None


def test_a_disabled_account_loses_its_session(engine: Engine) -> None:
    """Disabling an account ends its sessions at their next page."""
    add(engine, "j.meer", "staff")
    who = sign_in(engine, "j.meer", PASSWORD, "", NOW)
    with session(engine) as s:
        token = sessions.start(s, who, NOW)
    with session(engine) as s:
        s.scalars(select(ConsoleUser)).one().disabled = True
    with session(engine) as s:
        assert sessions.resume(s, token, NOW) is None
    with pytest.raises(SignInRefused):
        sign_in(engine, "j.meer", PASSWORD, "", NOW)


def test_an_ldap_account_is_checked_against_the_directory_and_still_needs_the_code(
    engine: Engine,
) -> None:
    """``--ldap`` accounts store no password: the proxy's LDAP bind checks it (ldap3's mock
    directory here), and the TOTP code is still required."""
    import ldap3

    from proxy.logins import LdapChecker
    from proxy.settings import LdapLogin

    server = ldap3.Server("dc.test.invalid")
    setup = ldap3.Connection(server, client_strategy=ldap3.MOCK_SYNC)
    setup.strategy.add_entry(
        "uid=head,ou=people,dc=school,dc=test",
        {"userPassword": "directory pass", "objectClass": "person", "sn": "Head"},
    )
    conf = LdapLogin(
        server="ldap://dc.test.invalid", user_dn="uid={user},ou=people,dc=school,dc=test"
    )
    directory = LdapChecker(conf, server=server, strategy=ldap3.MOCK_SYNC).check
    with session(engine) as s:
        user, _ = accounts.add_user(s, "head", "approver", "", NOW, ldap=True)
        secret = user.totp_secret
        assert user.password_hash == accounts.LDAP_PASSWORD
    for password, given in (("wrong", code(secret)), ("directory pass", "000000")):
        with pytest.raises(SignInRefused):
            sign_in(engine, "head", password, given, NOW, directory=directory)
    with pytest.raises(SignInRefused):  # no directory configured: never accepted
        sign_in(engine, "head", "directory pass", code(secret), NOW)
    who = sign_in(engine, "head", "directory pass", code(secret), NOW, directory=directory)
    assert who.role == "approver"
