"""Logins: a users file of bcrypt hashes, an LDAP bind, a cache, and bindings to addresses."""

from __future__ import annotations

from pathlib import Path

import ldap3
import pytest

from proxy.logins import (
    LdapChecker,
    LoginBindings,
    LoginChecker,
    LoginThrottle,
    UsersFile,
    hash_password,
)
from proxy.settings import LdapLogin
from proxy.yamlfile import ConfigError


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> UsersFile:
    path = tmp_path_factory.mktemp("users") / "users"
    path.write_text(
        "# staff\n"
        f"head.teacher:{hash_password('correct horse', rounds=4)}\n"
        "\n"
        f"j.meer:{hash_password('battery staple', rounds=4)}\n"
    )
    return UsersFile(path)


def test_right_password_checks_out(users: UsersFile) -> None:
    """A listed user with the right password is accepted."""
    assert users.check("head.teacher", "correct horse")


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("head.teacher", "wrong"),
        ("head.teacher", ""),
        ("head.teacher", "battery staple"),  # another user's password
        ("nobody", "correct horse"),
        ("HEAD.TEACHER", "correct horse"),
    ],
)
def test_wrong_logins_are_refused(users: UsersFile, user: str, password: str) -> None:
    """Wrong passwords, unknown users and other users' passwords are all refused."""
    assert not users.check(user, password)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("nocolon\n", 1, "expected NAME:HASH"),
        ("# c\nbob:{SHA}abc\n", 2, "not a bcrypt hash"),
        ("bob:plaintext\n", 1, "not a bcrypt hash"),
        (f"a:{'$2b$04$' + 'x' * 53}\na:{'$2b$04$' + 'x' * 53}\n", 2, "listed twice"),
    ],
)
def test_a_bad_users_file_names_its_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """Plain-text or SHA1 passwords and malformed lines are errors at their line."""
    path = tmp_path / "users"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        UsersFile(path)
    problem = caught.value.problems[0]
    assert (problem.line, message in problem.message) == (line, True)


def test_a_missing_users_file_is_one_error(tmp_path: Path) -> None:
    """A users file that is not there is a configuration error, not an empty file."""
    with pytest.raises(ConfigError, match="cannot read users file"):
        UsersFile(tmp_path / "absent")


@pytest.fixture
def directory() -> ldap3.Server:
    """ldap3's in-memory directory: the real client library, with a mock server behind it."""
    server = ldap3.Server("dc.test.invalid")
    setup = ldap3.Connection(server, client_strategy=ldap3.MOCK_SYNC)
    setup.strategy.add_entry(
        "uid=j.meer,ou=people,dc=school,dc=test",
        {"userPassword": "s3cret", "objectClass": "person", "sn": "Meer"},
    )
    return server


def ldap_checker(server: ldap3.Server) -> LdapChecker:
    conf = LdapLogin(
        server="ldap://dc.test.invalid", user_dn="uid={user},ou=people,dc=school,dc=test"
    )
    return LdapChecker(conf, server=server, strategy=ldap3.MOCK_SYNC)


def test_ldap_bind_with_the_right_password(directory: ldap3.Server) -> None:
    """The directory accepts the user's own password."""
    assert ldap_checker(directory).check("j.meer", "s3cret")


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("j.meer", "wrong"),
        ("j.meer", ""),  # an unauthenticated bind would "succeed" at a real directory
        ("nobody", "s3cret"),
        ("j.meer,ou=people,dc=school,dc=test", "s3cret"),  # DN injection is escaped
    ],
)
def test_ldap_refuses_wrong_logins(directory: ldap3.Server, user: str, password: str) -> None:
    """Wrong or empty passwords, unknown users and DN tricks do not bind."""
    assert not ldap_checker(directory).check(user, password)


def test_unreachable_directory_refuses() -> None:
    """A directory that cannot be reached means no login, never a pass."""
    conf = LdapLogin(server="ldap://127.0.0.1:1", user_dn="{user}@school.test", timeout_seconds=1)
    assert not LdapChecker(conf).check("j.meer", "s3cret")


def test_successes_are_cached_and_failures_are_not() -> None:
    """A checked login is remembered for a while; a failed one is asked again each time."""
    calls: list[tuple[str, str]] = []

    def check(user: str, password: str) -> bool:
        calls.append((user, password))
        return password == "ok"

    checker = LoginChecker([check])
    assert checker.check("u", "ok")
    assert checker.check("u", "ok")
    assert checker.cached("u", "ok")
    assert not checker.check("u", "bad")
    assert not checker.check("u", "bad")
    assert calls == [("u", "ok"), ("u", "bad"), ("u", "bad")]


def test_the_first_check_that_accepts_wins() -> None:
    """The users file is asked first, then the directory."""
    checker = LoginChecker([lambda u, p: False, lambda u, p: p == "ldap"])
    assert checker.check("x", "ldap")
    assert not checker.check("x", "other")


def test_bindings_are_shared_through_the_file(tmp_path: Path) -> None:
    """A binding made by one worker is seen by another, and ends when it expires."""
    path = tmp_path / "logins.json"
    one, two = LoginBindings(path), LoginBindings(path)
    one.bind("10.10.3.4", "head.teacher", minutes=10, now=1000.0)
    assert two.user_at("10.10.3.4", now=1001.0) == "head.teacher"
    assert two.user_at("10.10.3.5", now=1001.0) is None
    assert two.user_at("10.10.3.4", now=1000.0 + 601) is None


def test_unbind_signs_an_address_out(tmp_path: Path) -> None:
    """After unbind the address is nobody's again, for every reader."""
    path = tmp_path / "logins.json"
    one, two = LoginBindings(path), LoginBindings(path)
    one.bind("10.10.3.4", "j.meer", minutes=10, now=1000.0)
    assert two.user_at("10.10.3.4", now=1000.5) == "j.meer"
    two.unbind("10.10.3.4")
    assert one.user_at("10.10.3.4", now=1002.0) is None


def test_users_add_list_remove(tmp_path: Path) -> None:
    """`schoolgate users` writes bcrypt lines the proxy accepts, lists names, removes them."""
    from click.testing import CliRunner

    from proxy.cli import cli

    path = tmp_path / "users"
    runner = CliRunner()
    added = runner.invoke(
        cli,
        ["users", "add", "j.meer", "--password-stdin", "--file", str(path)],
        input="long enough\n",
    )
    assert added.exit_code == 0, added.output
    assert "long enough" not in path.read_text()
    assert UsersFile(path).check("j.meer", "long enough")
    assert (path.stat().st_mode & 0o077) == 0
    listed = runner.invoke(cli, ["users", "list", "--file", str(path)])
    assert listed.output.split() == ["j.meer"]
    short = runner.invoke(
        cli, ["users", "add", "x", "--password-stdin", "--file", str(path)], input="short\n"
    )
    assert short.exit_code == 1
    assert runner.invoke(cli, ["users", "remove", "j.meer", "--file", str(path)]).exit_code == 0
    assert UsersFile(path).hashes == {}


def test_the_throttle_backs_off_then_locks_out() -> None:
    """Free tries, then waits that double, then a lockout that refuses even the right password."""
    throttle = LoginThrottle(free=2, lockout_after=4, lockout_seconds=60)
    now = 1000.0
    for _ in range(2):
        assert throttle.wait("amy", "10.0.0.1", now) == 0
        throttle.attempt("amy", "10.0.0.1", now)
        assert throttle.failed("amy", "10.0.0.1", now) == []
    assert throttle.wait("amy", "10.0.0.1", now) == 1.0
    assert throttle.wait("amy", "10.0.0.9", now) == 1.0  # the user, from anywhere
    now += 1
    throttle.attempt("amy", "10.0.0.1", now)
    throttle.failed("amy", "10.0.0.1", now)
    assert throttle.wait("amy", "10.0.0.1", now) == 2.0
    now += 2
    throttle.attempt("amy", "10.0.0.1", now)
    assert throttle.failed("amy", "10.0.0.1", now) == ["user amy", "address 10.0.0.1"]
    assert throttle.lockouts == 2
    assert throttle.wait("amy", "10.0.0.1", now + 59) == 1.0
    assert throttle.wait("bob", "10.0.0.1", now + 30) == 30.0  # the address is locked too
    assert throttle.wait("amy", "10.0.0.1", now + 60) == 0


def test_a_right_password_ends_the_run_of_tries() -> None:
    """A right password clears the user's and the address's counts."""
    throttle = LoginThrottle(free=2, lockout_after=4, lockout_seconds=60)
    for _ in range(2):
        throttle.attempt("amy", "10.0.0.1", 5.0)
    assert throttle.wait("amy", "10.0.0.1", 5.0) > 0
    throttle.succeeded("amy", "10.0.0.1")
    assert throttle.wait("amy", "10.0.0.1", 5.0) == 0
