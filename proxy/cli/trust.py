"""``schoolgate trust apply``: a trust policy change, previewed at every site, then recorded.

The trust's file is shared by the sites (a mount, a config repository); each
site has its own overlay. ``trust apply EDITED --site DIR --site DIR…`` merges
the edited trust with each named site's overlay, refuses the change if any
site's merged policy is wrong (every problem as ``FILE:LINE``), shows what it
changes at each site, and then records one ``policy.apply`` row per site in
the shared change log (stamped with that site) before installing the file.
The gateways' hot reload then finds the text already recorded: nothing is
logged as unattributed.
"""

from __future__ import annotations

from pathlib import Path

import click

from proxy.cli.auth import prove
from proxy.cli.common import by_option, fail, open_filterset, open_store
from proxy.filterset import Filterset
from proxy.policyapply import install
from proxy.policydiff import impact, text_diff
from proxy.store import chain
from proxy.store.events import sha256
from proxy.store.site import at_site
from proxy.trust import layered_policy, recorded_text
from proxy.yamlfile import ConfigError


@click.group()
def trust() -> None:
    """The trust's policy shared by several schools (README: One trust, many schools)."""


def _site_impact(fs: Filterset, edited: Path, target: Path) -> list[str]:
    """What the edited trust changes at one site; raises ``ConfigError``."""
    overlay = fs.policy.source.read_text(encoding="utf-8")
    # Problems in the edited trust name the edited file, those in the overlay the site's.
    new = layered_policy(overlay, fs.policy.source, edited)
    new = fs.with_policy(new).policy
    return impact(fs.policy, new)


@trust.command("apply")
@click.argument("edited", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--site",
    "sites",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="A site's configuration folder (repeat for every site of the trust).",
)
@click.option("--reason", required=True, help="Why the trust's policy changes.")
@click.option("--dry-run", is_flag=True, help="Validate and show the impact; change nothing.")
@by_option
def trust_apply(edited: Path, sites: tuple[Path, ...], reason: str, dry_run: bool, by: str) -> None:
    """Check EDITED against every site's overlay, show its impact there, record and install."""
    filtersets = [open_filterset(site) for site in sites]
    targets = {fs.settings.trust_policy for fs in filtersets}
    if None in targets or len(targets) != 1:
        raise fail("every --site must name the same trust_policy in its schoolgate.yaml")
    target = targets.pop()
    assert target is not None
    text = edited.read_text(encoding="utf-8")
    old_text = target.read_text(encoding="utf-8") if target.exists() else ""
    if text == old_text:
        raise fail(f"{edited} is the same as the trust's policy in force: nothing to apply")
    problems = []
    impacts: dict[str, list[str]] = {}
    for fs in filtersets:
        try:
            impacts[fs.settings.site] = _site_impact(fs, edited, target)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        for problem in problems[1:]:
            click.echo(str(problem), err=True)
        raise fail(str(problems[0]))
    for site, lines in impacts.items():
        click.echo(f"impact at {site}:" if lines else f"impact at {site}: no decision changes")
        for line in lines:
            click.echo(f"  {line}")
    diff = text_diff(old_text, text, target.name)
    click.echo(diff.rstrip("\n"))
    if dry_run:
        click.echo("dry run: nothing recorded or installed")
        return
    store = open_store(sites[0])
    # A person acting: their console password and code, as for `policy apply`; the trust's
    # policy is every school's, so only a trust account (scope *) may change it.
    _, proof = prove(store.engine, store.now(), by, "policy", store.fs.settings, every_site=True)
    with store.session() as s:
        for fs in filtersets:
            overlay = fs.policy.source.read_text(encoding="utf-8")
            with at_site(fs.settings.site):
                row = chain.append(
                    s,
                    at=store.now(),
                    kind="policy.apply",
                    actor=by,
                    subject=f"trust policy {target} at {fs.settings.site}",
                    reason=reason,
                    details={
                        "sha256": sha256(recorded_text(overlay, target, text)),
                        "previous_sha256": sha256(recorded_text(overlay, target)),
                        "impact": impacts[fs.settings.site],
                        "diff": diff,
                        "text": recorded_text(overlay, target, text),
                        **proof,
                    },
                )
                click.echo(f"recorded at {fs.settings.site} as change #{row.seq}")
        # Installed inside the transaction: if writing fails, the records are rolled back.
        install(target, text)
    click.echo("applied; every gateway picks it up within seconds")
