"""Files Schoolgate writes are private to the service user, whatever umask it started with.

The data folder holds everyone's browsing (``access.log``), the incident log
and names (the SQLite store and its ``-wal``/``-shm``), the spool, login
bindings (``logins.json``), the signing key, the list index and the
mitmproxy CA's private key. Every ``schoolgate`` command sets the umask to
``PRIVATE_UMASK`` before it does anything, so each file it creates is 0600
and each folder 0700 (owner only); a process started under the usual 022
would otherwise make them world-readable. ``run`` also takes group and
other access away from anything already in the data folder (an install made
before this rule). Why owner only and not a log-readers group: the same
folder holds the store and the CA key, which no log reader should see; a
log shipper is given ``access.log`` by running as the service user, or by
logrotate's ``create`` mode for its rotated copies.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("schoolgate.files")

PRIVATE_UMASK = 0o077


def set_private_umask() -> None:
    """Files and folders this process creates from now on are the owner's alone."""
    os.umask(PRIVATE_UMASK)


def make_private(folder: Path) -> int:
    """Create ``folder`` (0700) and take group and other access from all in it; how many
    paths were tightened. Symbolic links are not followed; paths owned by another user are
    left (and logged), since only their owner may change them."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tightened = 0
    paths = [folder]
    for root, dirs, files in os.walk(folder):
        paths += [Path(root, name) for name in dirs + files]
    for path in paths:
        try:
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077:
                continue
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)
            tightened += 1
        except FileNotFoundError:
            continue
        except PermissionError:
            log.warning("%s: owned by another user; cannot make it private", path)
    if tightened:
        log.warning("made %d paths under %s private to the service user", tightened, folder)
    return tightened
