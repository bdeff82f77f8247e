"""A throwaway OpenLDAP ``slapd`` for the directory tests, from Debian's binaries.

Started in a temporary folder on a free 127.0.0.1 port with a ``slapd.conf``
(mdb database, suffix ``dc=school,dc=local``, the core, cosine, inetOrgPerson
and nis schemas) and the school's people and groups loaded with ``slapadd``
before it starts. ``.ci/run`` installs ``slapd`` where missing: locally a
machine without it skips, in CI (``CI=true``) that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SUFFIX = "dc=school,dc=local"
ADMIN_DN, ADMIN_PASSWORD = f"cn=admin,{SUFFIX}", "directory-admin-secret"

PEOPLE = ["carol.staff", "dan.pupil", "erin.nobody"]
ENTRIES = (
    f"""\
dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: school
o: Test School

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups
"""
    + "".join(
        f"""
dn: uid={name},ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: {name}
cn: {name}
sn: {name.split(".")[0]}
"""
        for name in PEOPLE
    )
    + f"""
dn: cn=teachers,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: teachers
member: uid=carol.staff,ou=people,{SUFFIX}

dn: cn=year7,ou=groups,{SUFFIX}
objectClass: posixGroup
cn: year7
gidNumber: 1007
memberUid: dan.pupil
"""
)


@dataclass
class Slapd:
    url: str
    suffix: str = SUFFIX


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def run_slapd() -> Iterator[Slapd]:
    """A running slapd with ENTRIES loaded; stopped and removed afterwards."""
    if not SLAPD.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("slapd must be installed in CI (.ci/run installs it)")
        pytest.skip("Debian's slapd is not installed (.ci/run installs it)")
    folder = Path(tempfile.mkdtemp(prefix="schoolgate-slapd-"))
    try:
        (folder / "db").mkdir()
        conf = folder / "slapd.conf"
        conf.write_text(
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            "include /etc/ldap/schema/nis.schema\n"
            "modulepath /usr/lib/ldap\n"
            "moduleload back_mdb\n"
            f"pidfile {folder}/slapd.pid\n"
            "database mdb\n"
            "maxsize 10485760\n"
            f'suffix "{SUFFIX}"\n'
            f'rootdn "{ADMIN_DN}"\n'
            f"rootpw {ADMIN_PASSWORD}\n"
            f"directory {folder}/db\n"
            "access to * by * read\n",
            encoding="utf-8",
        )
        (folder / "entries.ldif").write_text(ENTRIES, encoding="utf-8")
        subprocess.run(
            [str(SLAPADD), "-f", str(conf), "-l", str(folder / "entries.ldif")],
            check=True,
            capture_output=True,
        )
        port = _free_port()
        url = f"ldap://127.0.0.1:{port}"
        process = subprocess.Popen(
            [str(SLAPD), "-f", str(conf), "-h", f"{url}/", "-d", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    _, err = process.communicate()
                    raise AssertionError(f"slapd did not start: {err.decode()[-2000:]}") from None
                time.sleep(0.1)
        try:
            yield Slapd(url)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """One slapd for the session's directory tests."""
    with run_slapd() as server:
        yield server
