"""The real proxy process, filtering real HTTP and HTTPS from simulated users."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import (
    GUEST,
    HEAD,
    PUPIL,
    STAFF,
    TEST_POLICY,
    Gateway,
    Origin,
    OriginCA,
    schoolgate_command,
    write_config,
)


def test_pupil_is_blocked_over_http(gateway: Gateway) -> None:
    """A pupil asking for an adult site gets the 403 block page with a reference."""
    status, body = gateway.get("http://adult-demo.example/page", client=PUPIL)
    assert status == 403
    assert "category <strong>adult</strong>" in body
    assert 'id="reference">SG-' in body
    assert "ask your teacher or the IT office" in body


def test_allowed_request_reaches_the_origin(gateway: Gateway, origin: Origin) -> None:
    """A pupil's uncategorised request passes through to the local origin."""
    status, body = gateway.get(f"http://localhost:{origin.http_port}/lesson", client=PUPIL)
    assert status == 200
    assert body.startswith("origin ok")
    assert "/lesson" in body


def test_pupil_is_blocked_over_https(gateway: Gateway) -> None:
    """A blocked HTTPS host gets the block page inside the intercepted TLS connection."""
    status, body = gateway.get("https://casino-demo.example/", client=PUPIL)
    assert status == 403
    assert "gambling" in body


def test_allowed_https_reaches_the_origin(gateway: Gateway, origin: Origin) -> None:
    """HTTPS to an allowed host is intercepted, checked and forwarded to the origin."""
    status, body = gateway.get(f"https://localhost:{origin.https_port}/secure", client=PUPIL)
    assert status == 200
    assert "origin ok" in body


def test_groups_get_their_own_rules(gateway: Gateway, origin: Origin) -> None:
    """Social media is blocked for pupils and staff, open to the headteacher."""
    url = f"http://127.0.0.1:{origin.http_port}/feed"
    headers = {"Host": "social-demo.example"}
    assert gateway.get(url, client=PUPIL, headers=headers)[0] == 403
    assert gateway.get(url, client=STAFF, headers=headers)[0] == 403
    status, body = gateway.get(url, client=HEAD, headers=headers)
    assert status == 200
    assert "social-demo.example" in body


def test_guest_inherits_pupil_rules(gateway: Gateway) -> None:
    """An address in no network is a guest, and guests inherit the pupil rules."""
    assert gateway.get("http://friends.example/", client=GUEST)[0] == 403


def test_local_allow_opens_only_its_path(gateway: Gateway, origin: Origin) -> None:
    """The school's allow entry opens its path; a local block entry blocks for everyone."""
    url = f"http://127.0.0.1:{origin.http_port}"
    allowed = gateway.get(f"{url}/bitesize/maths", client=PUPIL, headers={"Host": "www.bbc.co.uk"})
    assert allowed[0] == 200
    assert gateway.get("http://bad.example/", client=HEAD)[0] == 403


def test_evasive_spellings_are_still_blocked(gateway: Gateway) -> None:
    """Case, trailing dots, dot segments and escapes do not open a blocked URL."""
    assert gateway.get("http://ADULT-DEMO.EXAMPLE./", client=PUPIL)[0] == 403
    assert gateway.get("http://media.example/x/../ADULT/clip", client=PUPIL)[0] == 403
    assert gateway.get("http://media.example/%61dult/clip", client=PUPIL)[0] == 403


def test_url_entries_match_on_segment_boundaries(gateway: Gateway, origin: Origin) -> None:
    """The entry media.example/adult does not block /adulthood on the same host."""
    url = f"http://127.0.0.1:{origin.http_port}/adulthood"
    assert gateway.get(url, client=PUPIL, headers={"Host": "media.example"})[0] == 200


def test_illegal_hit_shows_and_logs_no_url(gateway: Gateway) -> None:
    """An IWF hit gets the IWF wording; neither the page nor the access log has the URL."""
    status, body = gateway.get("http://iwf-test.example/abuse/test-image.jpg", client=HEAD)
    assert status == 403
    assert "Internet Watch Foundation" in body
    assert "iwf-test" not in body
    assert "test-image" not in body
    line = gateway.access_line(lambda entry: entry.get("incident") == "illegal")
    assert line["host"] == "(withheld)"
    log = gateway.access_log.read_text(encoding="utf-8")
    assert "iwf-test" not in log
    assert "test-image" not in log


def test_access_log_has_one_line_per_request(gateway: Gateway) -> None:
    """Each request is one JSON line with who, where and what was decided."""
    gateway.get("http://games-demo.example/one-line", client=PUPIL)
    line = gateway.access_line(lambda entry: entry.get("path") == "/one-line")
    assert line["host"] == "games-demo.example"
    assert line["client_ip"] == PUPIL
    assert line["group"] == "pupil"
    assert line["decision"] == "block"
    assert line["category"] == "games"
    assert line["ref"].startswith("SG-")
    assert "time" in line


def test_policy_is_reloaded_and_a_bad_edit_keeps_the_last_good(
    own_gateway: Gateway, origin: Origin
) -> None:
    """A saved change takes effect without a restart; a broken file keeps the old policy."""
    url = f"http://localhost:{origin.http_port}/"
    assert own_gateway.get(url, client=PUPIL)[0] == 200
    policy = own_gateway.config_dir / "policy.yaml"
    text = policy.read_text(encoding="utf-8")
    policy.write_text(
        text.replace(
            "    - {entry: bad.example, category: adult}",
            "    - {entry: bad.example, category: adult}\n"
            "    - {entry: localhost, category: gambling}",
        ),
        encoding="utf-8",
    )
    _wait_for(lambda: own_gateway.get(url, client=PUPIL)[0] == 403)

    policy.write_text(text.replace("default_group: guest", "default_group: nobody"), "utf-8")
    _wait_for(lambda: "unknown group 'nobody'" in own_gateway.stderr())
    assert own_gateway.get(url, client=PUPIL)[0] == 403
    assert own_gateway.process.poll() is None


def test_bad_config_at_start_is_one_line_and_exit_1(tmp_path: Path, origin_ca: OriginCA) -> None:
    """`schoolgate run` refuses a broken policy with FILE:LINE and a non-zero exit."""
    write_config(
        tmp_path / "config",
        tmp_path / "var",
        1,
        TEST_POLICY.replace("{acceptable_at: never}", "{acceptable_at: nowhen}"),
    )
    result = subprocess.run(
        [*schoolgate_command(), "run", "--config", str(tmp_path / "config")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith("unknown schedule 'nowhen' (known: never)")
    assert "policy.yaml:" in result.stderr
    assert "Traceback" not in result.stderr


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
