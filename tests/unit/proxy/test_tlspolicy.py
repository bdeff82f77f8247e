"""TLS choices from the host alone: intercept, pass through undecrypted, or refuse."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from blocklists.index import IndexBuilder
from proxy.filterset import Filterset
from proxy.policy import parse_policy
from proxy.settings import Settings, Source
from proxy.tlspolicy import TlsChoice, choose, decide_hosts, is_ip, tcp_passthrough_allowed
from proxy.yamlfile import ConfigError

POLICY = """\
school: S
identity:
  default_group: guest
  networks:
    - {cidr: 10.10.0.0/16, group: pupil}
    - {cidr: 10.30.0.0/16, group: byod}
  users:
    - {name: head.teacher, group: head, ips: [10.20.0.5]}
categories:
  adult: {lists: [ut1/adult], incident: deliberate_offensive}
  banking: {lists: [ut1/bank]}
no_decrypt:
  categories: [banking]
  hosts: [pinned.example]
groups:
  pupil:
    default: acceptable
    safe_search: strict
    categories: {adult: unacceptable}
  byod:
    inherits: pupil
    intercept: false
    https_without_sni: filter
  head:
    default: acceptable
    allowed_ports: [443, "8000-8999"]
  guest:
    inherits: pupil
"""
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def fs() -> Filterset:
    builder = IndexBuilder()
    builder.add("ut1/adult", "adult.example")
    builder.add("ut1/bank", "bank.example")
    policy = parse_policy(POLICY, Path("policy.yaml"))
    settings = Settings(sources={"ut1": Source(path=Path("/nonexistent"), format="ut1")})
    return Filterset.build(settings, policy, builder.freeze())


def who(fs: Filterset, ip: str):
    return fs.identities.resolve(ip)


def choose_for(
    fs: Filterset, identity, *, sni: str | None, connect_host: str | None, when: datetime
) -> TlsChoice:
    """What the proxy does: the filter decides the names once, then ``choose`` acts on it."""
    decided = decide_hosts(fs, identity, (sni, connect_host), when)
    no_name = sni is None and (connect_host is None or is_ip(connect_host))
    return choose(fs, identity, decided, no_name=no_name)


def test_trusting_clients_are_intercepted(fs: Filterset) -> None:
    """A pupil's device trusts the CA: TLS is decrypted and decided per request."""
    choice = choose_for(fs, who(fs, "10.10.0.9"), sni="adult.example", connect_host=None, when=NOW)
    assert choice.action == "intercept"


def test_no_decrypt_hosts_and_categories_pass_untouched(fs: Filterset) -> None:
    """Banking (a category) and a pinned app's host are passed through, not decrypted."""
    pupil = who(fs, "10.10.0.9")
    bank = choose_for(fs, pupil, sni="www.bank.example", connect_host=None, when=NOW)
    assert (bank.action, bank.host) == ("pass", "www.bank.example")
    assert "no-decrypt category banking" in bank.reason
    pinned = choose_for(fs, pupil, sni="api.pinned.example", connect_host=None, when=NOW)
    assert pinned.action == "pass"


def test_clients_without_the_ca_are_filtered_on_sni(fs: Filterset) -> None:
    """A BYOD device is never intercepted: allowed hosts pass, blocked hosts are refused."""
    byod = who(fs, "10.30.0.9")
    assert choose_for(fs, byod, sni="lesson.example", connect_host=None, when=NOW).action == "pass"
    refused = choose_for(fs, byod, sni="adult.example", connect_host=None, when=NOW)
    assert refused.action == "refuse"
    assert refused.decision is not None
    assert refused.decision.incident == "unacceptable"


def test_a_blocked_connect_host_refuses_whatever_the_sni(fs: Filterset) -> None:
    """Fronting an allowed SNI does not open a blocked CONNECT host for undecrypted TLS."""
    byod = who(fs, "10.30.0.9")
    choice = choose_for(fs, byod, sni="lesson.example", connect_host="adult.example", when=NOW)
    assert choice.action == "refuse"


@pytest.mark.parametrize(
    ("sni", "target"),
    [
        ("www.google.co.uk", "forcesafesearch.google.com"),
        ("images.google.com", "forcesafesearch.google.com"),
        ("www.bing.com", "strict.bing.com"),
        ("www.youtube.com", "restrict.youtube.com"),
        ("youtubei.googleapis.com", "restrict.youtube.com"),
        ("duckduckgo.com", "safe.duckduckgo.com"),
    ],
)
def test_search_engines_pass_to_their_safe_address_without_decryption(
    fs: Filterset, sni: str, target: str
) -> None:
    """Undecrypted, a search engine's tunnel goes to its locked service's address (strict)."""
    choice = choose_for(fs, who(fs, "10.30.0.9"), sni=sni, connect_host=None, when=NOW)
    assert (choice.action, choice.connect_to) == ("pass", target)
    assert "safe search" in choice.reason


def test_unlockable_engines_are_refused_without_decryption(fs: Filterset) -> None:
    """An engine with no locked service cannot be made safe undecrypted, so it is refused."""
    choice = choose_for(
        fs, who(fs, "10.30.0.9"), sni="search.yahoo.com", connect_host=None, when=NOW
    )
    assert choice.action == "refuse"
    assert "safe search" in choice.reason


def test_ordinary_hosts_pass_to_their_own_address(fs: Filterset) -> None:
    """Only search engines are sent elsewhere; mail.google.com keeps its own address."""
    choice = choose_for(
        fs, who(fs, "10.30.0.9"), sni="mail.google.com", connect_host=None, when=NOW
    )
    assert (choice.action, choice.connect_to) == ("pass", None)


def test_https_without_sni_follows_the_group(fs: Filterset) -> None:
    """No SNI to a raw IP: refused for pupils, decided on the address for BYOD."""
    pupil = choose_for(fs, who(fs, "10.10.0.9"), sni=None, connect_host="203.0.113.7", when=NOW)
    assert pupil.action == "refuse"
    assert "no SNI" in pupil.reason
    byod = choose_for(fs, who(fs, "10.30.0.9"), sni=None, connect_host="203.0.113.7", when=NOW)
    assert byod.action == "pass"


def test_protection_fields_inherit_and_ports_parse(fs: Filterset) -> None:
    """Groups inherit the protections; ports take numbers and ranges; 443 is the default."""
    groups = fs.policy.groups
    assert groups["byod"].safe_search == "strict"
    assert not groups["byod"].intercept
    assert groups["pupil"].intercept
    assert groups["pupil"].port_allowed(443)
    assert not groups["pupil"].port_allowed(22)
    assert groups["head"].port_allowed(8443)
    assert not groups["head"].port_allowed(9000)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("categories: [banking]", "categories: [banks]", "unknown category 'banks'"),
        ("hosts: [pinned.example]", "hosts: [pinned.example/app]", "has a path"),
        ('allowed_ports: [443, "8000-8999"]', "allowed_ports: [0]", "within 1-65535"),
        ('allowed_ports: [443, "8000-8999"]', 'allowed_ports: ["ssh"]', "not a port"),
        ("intercept: false", "intercept: maybe", "intercept"),
        ("https_without_sni: filter", "https_without_sni: allow", "https_without_sni"),
    ],
)
def test_bad_protection_fields_name_their_line(old: str, new: str, message: str) -> None:
    """Each mistake in the new fields is one file:line error."""
    with pytest.raises(ConfigError) as caught:
        parse_policy(POLICY.replace(old, new), Path("policy.yaml"))
    assert any(message in str(p) for p in caught.value.problems)
    assert all(str(p).startswith("policy.yaml:") for p in caught.value.problems)


def test_an_unreadable_sni_counts_as_none(fs: Filterset) -> None:
    """An SNI the parser rejects follows https_without_sni and is never passed through."""
    pupil, byod = who(fs, "10.10.0.9"), who(fs, "10.30.0.9")
    decided = decide_hosts(fs, pupil, (None, "lesson.example"), NOW)
    refused = choose(fs, pupil, decided, unreadable_sni=True)
    assert refused.action == "refuse"
    assert "unreadable SNI" in refused.reason
    # BYOD says `https_without_sni: filter`, but undecrypted, the server would read the name.
    decided = decide_hosts(fs, byod, (None, "lesson.example"), NOW)
    assert choose(fs, byod, decided, unreadable_sni=True).action == "refuse"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("ssh.example.org", "not HOST:PORT"),
        ("ssh.example.org:0", "not HOST:PORT"),
        ("ssh.example.org:99999", "not HOST:PORT"),
        ("bad..host:22", "bad host"),
    ],
)
def test_bad_tcp_passthrough_entries_name_their_line(entry: str, message: str) -> None:
    """Each tcp_passthrough entry must be HOST:PORT; a mistake is one file:line error."""
    text = POLICY + f'tcp_passthrough: ["git.example.org:22", "{entry}"]\n'
    with pytest.raises(ConfigError) as caught:
        parse_policy(text, Path("policy.yaml"))
    (problem,) = caught.value.problems  # the good entry beside it is no problem
    assert message in str(problem)
    assert str(problem).startswith(f"policy.yaml:{POLICY.count(chr(10)) + 1}:")


def test_tcp_passthrough_is_exact_host_and_port(fs: Filterset) -> None:
    """Only the listed host and port carry raw TCP: not another port, not a subdomain."""
    policy = parse_policy(
        POLICY + 'tcp_passthrough: ["Git.Example.org:22", "[::1]:2222"]\n', Path("policy.yaml")
    )
    ours = Filterset.build(fs.settings, policy, fs.lists)
    assert tcp_passthrough_allowed(ours, "git.example.org", 22)
    assert tcp_passthrough_allowed(ours, "GIT.example.org.", 22)
    assert tcp_passthrough_allowed(ours, "::1", 2222)
    assert not tcp_passthrough_allowed(ours, "git.example.org", 443)
    assert not tcp_passthrough_allowed(ours, "x.git.example.org", 22)
    assert not tcp_passthrough_allowed(fs, "git.example.org", 22)
