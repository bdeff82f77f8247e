"""Directory group membership picks the filter group, against a real slapd the tests start."""

from __future__ import annotations

import pytest

from proxy.directory import DirectoryGroups
from proxy.settings import Directory
from tests.slapd import ADMIN_DN, SUFFIX, Slapd, slapd  # noqa: F401  (the fixture)


def directory(server: Slapd, **more: object) -> Directory:
    return Directory.model_validate(
        {
            "server": server.url,
            "base_dn": SUFFIX,
            "groups": [
                {"dn": f"cn=teachers,ou=groups,{SUFFIX}", "group": "staff"},
                {"dn": f"CN=Year7,OU=Groups,{SUFFIX.upper()}", "group": "pupil"},
            ],
            **more,
        }
    )


@pytest.mark.parametrize(
    ("user", "group"),
    [
        ("carol.staff", "staff"),  # groupOfNames member (DN)
        ("dan.pupil", "pupil"),  # posixGroup memberUid; the mapping's DN in another case
        ("erin.nobody", None),  # in no mapped group
        ("nobody.at.all", None),  # not in the directory
        ("*)(uid=*", None),  # an injection attempt finds nobody
    ],
)
def test_members_get_the_mapped_group(slapd: Slapd, user: str, group: str | None) -> None:  # noqa: F811
    """A member of a mapped directory group gets its filter group; anyone else none."""
    groups = DirectoryGroups(directory(slapd))
    assert groups.lookup(user) == group
    assert groups.cached(user) == (True, group)


def test_bind_with_a_password_from_the_environment(slapd: Slapd) -> None:  # noqa: F811
    """bind_dn with bind_password_env binds as that account; a wrong password is a failure."""
    settings = directory(slapd, bind_dn=ADMIN_DN, bind_password_env="DIR_PW")
    good = DirectoryGroups(settings, {"DIR_PW": "directory-admin-secret"})
    assert good.lookup("carol.staff") == "staff"
    bad = DirectoryGroups(settings, {"DIR_PW": "wrong"})
    assert bad.lookup("carol.staff") is None
    assert bad.errors == 1


def test_unreachable_directory_is_a_cached_failure() -> None:
    """A directory that does not answer gives no group, and is not asked again at once."""
    settings = Directory.model_validate(
        {
            "server": "ldap://127.0.0.1:9",
            "base_dn": SUFFIX,
            "groups": [{"dn": "cn=x", "group": "staff"}],
            "timeout_seconds": 1,
        }
    )
    groups = DirectoryGroups(settings)
    assert groups.lookup("carol.staff") is None
    assert groups.cached("carol.staff") == (True, None)
    assert groups.errors == 1
