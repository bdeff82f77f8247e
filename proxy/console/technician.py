"""The technician's pages: status, "test a URL", list-update history, search by reference,
and policy apply with its impact preview.

"Test a URL" is ``explain``: the same ``Filterset.decide_url`` with the
overrides and suspensions in force. Policy apply is ``policy apply``: the
same ``proxy.policyapply`` preview and record, as the signed-in technician.
Nothing here shows the address of an illegal hit: the access log withholds
it, and the search shows the log's fields as written.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from blocklists.normalise import BadURL, normalise_url
from proxy.console.models import PolicyProposal
from proxy.console.requests import actor_details
from proxy.console.web import (
    at_sites,
    checked_form,
    here,
    page_number,
    paginate,
    person,
    render,
    see_other,
    site_of,
    state_of,
    text,
)
from proxy.explain import Protection
from proxy.explain import learned as learned_entry
from proxy.identity import Identity, parse_ip
from proxy.incidents.models import Incident
from proxy.policyapply import apply as apply_policy
from proxy.policyapply import preview
from proxy.store import chain, control
from proxy.store.engine import down_reason, shown_url
from proxy.store.events import sha256
from proxy.store.models import Change, Override
from proxy.store.site import current_site
from proxy.yamlfile import ConfigError

SEARCH_BYTES = 64 * 1024 * 1024  # the newest 64 MB of the access log are searched


@dataclass(frozen=True)
class SourceStatus:
    name: str
    where: str
    entries: int
    age: str
    last_update: Change | None


def _age(path: Path | None) -> str:
    if path is None or not path.exists():
        return "not found"
    hours = (time.time() - path.stat().st_mtime) / 3600
    return f"{hours:.0f} hours" if hours < 48 else f"{hours / 24:.0f} days"


async def status(request: Request) -> Response:
    signed = await person(request, "status")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    state = state_of(request)
    fs = state.fs
    settings = fs.settings
    counts = fs.lists.counts()
    store_ok, store_error, head = True, None, None
    updates: dict[str, Change] = {}
    try:
        with state.session(read_only=True) as s:
            head = chain.head(s)
            for row in s.scalars(
                select(Change)
                .where(Change.kind == "lists.update", Change.site == current_site())
                .order_by(Change.seq.desc())
                .limit(200)
            ):
                source = json.loads(row.details).get("source")
                if isinstance(source, str):
                    updates.setdefault(source, row)
    except Exception as exc:
        store_ok, store_error = False, down_reason(exc)
    sources = [
        SourceStatus(
            name,
            str(src.path or src.url),
            sum(n for key, n in counts.items() if key == name or key.startswith(f"{name}/")),
            _age(src.path),
            updates.get(name),
        )
        for name, src in sorted(settings.sources.items())
    ]
    spool = settings.data_dir / "spool"
    spooled = (
        sum(1 for p in spool.glob("*") if p.is_file() and p.stat().st_size) if spool.is_dir() else 0
    )
    alerts = settings.alerts
    return render(
        request,
        "status.html",
        signed,
        sources=sources,
        store_ok=store_ok,
        store_error=store_error,
        database=shown_url(state.engine.url.render_as_string(hide_password=False)),
        head=head,
        spooled=spooled,
        workers=settings.workers,
        listen=settings.listen,
        modes=settings.modes,
        illegal_alerts=bool(alerts.illegal.webhook or alerts.illegal.email),
        digest_alerts=bool(alerts.digest.webhook or alerts.digest.email),
        warnings=[str(w) for w in fs.warnings],
        approvers=fs.policy.approvers,
    )


async def test_url(request: Request) -> Response:
    signed = await person(request, "status")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    state = state_of(request)
    fs = state.fs
    q = request.query_params
    url, who, value, at = (
        q.get("url", ""),
        q.get("as", "group"),
        q.get("value", ""),
        q.get("at", ""),
    )
    result, error, identity, when = None, None, None, state.now()
    learned: Protection | None = None
    hits: list[tuple[str, str, list[str], list[str]]] = []
    if url:
        try:
            if at:
                when = datetime.fromisoformat(at)
                if when.tzinfo is None:
                    when = when.replace(tzinfo=fs.policy.timezone)
            if who == "user":
                group = fs.identities.group_of(value)
                if group is None:
                    raise ValueError(f"{value!r} is not a named user in the policy")
                identity = Identity(value, group, None, "login")
            elif who == "address":
                parse_ip(value)
                identity = fs.identities.resolve(value)
            else:
                if value not in fs.policy.groups:
                    raise ValueError("choose a group")
                identity = Identity(None, value, None, "given")
            canonical = normalise_url(url)
            with state.session(read_only=True) as s:
                controls = control.load_controls(s, when)
            result = fs.decide_url(identity, canonical, when, controls)
            # As explain: whether content analysis learned it, and whether that refuses it.
            learned = learned_entry(fs, fs.policy.groups[identity.group], canonical)
            rules = fs.policy.groups[identity.group]
            for hit in fs.lookup(canonical):
                names = [n for n, c in fs.policy.categories.items() if hit.list in c.lists]
                illegal = any(fs.policy.categories[n].illegal for n in names)
                hits.append(
                    (
                        hit.list,
                        "(not shown: an illegal list)" if illegal else hit.entry,
                        names,
                        [rules.action_for(n).label for n in names],
                    )
                )
        except (ValueError, BadURL) as exc:
            error = str(exc) or "not a URL"
    return render(
        request,
        "test.html",
        signed,
        url=url,
        who=who,
        value=value,
        at=at,
        result=result,
        error=error,
        identity=identity,
        when=when,
        hits=hits,
        learned=learned,
        groups=sorted(fs.policy.groups),
    )


async def list_history(request: Request) -> Response:
    signed = await person(request, "status")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    state = state_of(request)
    with state.session(read_only=True) as s:
        page = paginate(
            s,
            select(Change)
            .where(Change.kind == "lists.update", Change.site == current_site())
            .order_by(Change.seq.desc()),
            page_number(request),
        )
    return render(request, "lists.html", signed, page=page)


def _access_lines(path: Path, reference: str) -> list[dict[str, object]]:
    if not path.exists():
        return []
    found = []
    needle = f'"{reference}"'.encode()
    with path.open("rb") as f:
        size = path.stat().st_size
        f.seek(max(0, size - SEARCH_BYTES))
        for line in f:
            if needle in line:
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
    return found[:50]


async def search(request: Request) -> Response:
    signed = await person(request, "status")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    state = state_of(request)
    reference = request.query_params.get("reference", "").strip().upper()[:40]
    lines: list[dict[str, object]] = []
    incidents: list[Incident] = []
    overrides: list[Override] = []
    if reference:
        with state.session(read_only=True) as s:
            site = site_of(request, signed)
            incidents = list(
                s.scalars(
                    at_sites(
                        select(Incident).where(Incident.reference == reference), Incident.site, site
                    )
                )
            )
            overrides = list(
                s.scalars(
                    at_sites(
                        select(Override).where(Override.reference == reference), Override.site, site
                    )
                )
            )
        lines = _access_lines(state.fs.settings.access_log_path, reference)
    return render(
        request,
        "search.html",
        signed,
        reference=reference,
        lines=lines,
        incidents=incidents,
        overrides=overrides,
    )


MAX_POLICY = 1_000_000


def policy_text(value: object) -> str:
    """The policy as posted, with the CR LF line ends browsers send made LF again."""
    if not isinstance(value, str):
        return ""
    return value[:MAX_POLICY].replace("\r\n", "\n")


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


async def policy_page(request: Request) -> Response:
    signed = await person(request, "policy")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    state = state_of(request)
    fs = state.fs
    current = fs.policy.source.read_text(encoding="utf-8")
    waiting = []
    with state.session(read_only=True) as s:
        for proposal in s.scalars(
            select(PolicyProposal)
            .where(PolicyProposal.outcome.is_(None), PolicyProposal.site == current_site())
            .order_by(PolicyProposal.id)
        ):
            try:
                shown = preview(fs, proposal.text, fs.policy.source)
            except ConfigError:
                shown = None
            waiting.append((proposal, shown))
    return render(
        request,
        "policy.html",
        signed,
        current=current,
        warnings=[str(w) for w in fs.warnings],
        source=fs.policy.source.name,
        two_person=fs.settings.policy_changes == "two_person",
        waiting=waiting,
        proposed=request.query_params.get("proposed"),
    )


async def policy_preview(request: Request) -> Response:
    signed = await person(request, "policy")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    form = await checked_form(request, signed)
    fs = state_of(request).fs
    upload = form.get("file")
    body = policy_text(form.get("text"))
    if upload is not None and not isinstance(upload, str):
        data = await upload.read(MAX_POLICY)
        if data:
            body = policy_text(data.decode("utf-8", "replace"))
    problems: list[str] = []
    shown = None
    try:
        shown = preview(fs, body, fs.policy.source)
    except ConfigError as exc:
        problems = [str(p) for p in exc.problems]
    return render(
        request,
        "policy_preview.html",
        signed,
        400 if problems else 200,
        problems=problems,
        shown=shown,
        body=body,
        digest=_digest(body),
    )


async def policy_apply(request: Request) -> Response:
    signed = await person(request, "policy")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    form = await checked_form(request, signed)
    state = state_of(request)
    fs = state.fs
    body = policy_text(form.get("text"))
    reason = text(form, "reason")
    problems: list[str] = []
    shown = None
    if _digest(body) != text(form, "digest", 64):
        problems = ["the text changed after the preview: preview it again"]
    elif not reason:
        problems = ["say why the policy changes: the governor reads it"]
    else:
        try:
            shown = preview(fs, body, fs.policy.source)
        except ConfigError as exc:
            problems = [str(p) for p in exc.problems]
    if shown is not None and not shown.diff:
        problems = ["this is the policy in force already: nothing to apply"]
    if problems or shown is None:
        return render(
            request,
            "policy_preview.html",
            signed,
            400,
            problems=problems,
            shown=shown,
            body=body,
            digest=_digest(body),
        )
    if fs.settings.policy_changes == "two_person":
        with state.session() as s:
            proposal = PolicyProposal(
                text=body,
                sha256=sha256(body),
                base_sha256=sha256(shown.old_text),
                reason=reason,
                proposed_by=signed.person.name,
                proposed_at=state.now(),
            )
            s.add(proposal)
            s.flush()
            chain.append(
                s,
                at=state.now(),
                kind="policy.propose",
                actor=signed.person.name,
                subject=f"policy {fs.policy.source}",
                reason=reason,
                details={
                    "proposal": proposal.id,
                    "sha256": proposal.sha256,
                    "impact": shown.changes,
                    "diff": shown.diff,
                    **actor_details(request),
                },
            )
        return see_other(f"/policy?proposed={proposal.id}")
    with state.session() as s:
        row = apply_policy(
            s,
            fs,
            shown,
            by=signed.person.name,
            reason=reason,
            now=state.now(),
            extra=actor_details(request),
        )
    return see_other(f"/changes?applied={row.seq}")


async def proposal_apply(request: Request) -> Response:
    """A second person applies a proposed change: never its proposer, and only over the
    policy it was proposed against."""
    signed = await person(request, "policy")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    await checked_form(request, signed)
    state = state_of(request)
    fs = state.fs
    with state.session() as s:
        found = s.get(PolicyProposal, int(request.path_params["id"]), with_for_update=True)
        if found is None or found.outcome is not None or found.site != current_site():
            raise HTTPException(404, "no such proposal waiting")
        if found.proposed_by == signed.person.name:
            raise HTTPException(
                403, "you proposed this change: a second person must apply it (two-person rule)"
            )
        try:
            shown = preview(fs, found.text, fs.policy.source)
        except ConfigError as exc:
            raise HTTPException(409, f"it no longer checks: {exc.problems[0]}") from None
        if sha256(shown.old_text) != found.base_sha256:
            raise HTTPException(409, "the policy changed since this was proposed: propose again")
        row = apply_policy(
            s,
            fs,
            shown,
            by=found.proposed_by,
            reason=found.reason,
            now=state.now(),
            extra={**actor_details(request), "proposal": found.id},
            approved_by=signed.person.name,
        )
        found.outcome, found.decided_by, found.decided_at = (
            "applied",
            signed.person.name,
            state.now(),
        )
    return see_other(f"/changes?applied={row.seq}")


async def proposal_withdraw(request: Request) -> Response:
    signed = await person(request, "policy")
    here(signed)  # this gateway\'s own pages: its lists, log and policy
    await checked_form(request, signed)
    state = state_of(request)
    with state.session() as s:
        found = s.get(PolicyProposal, int(request.path_params["id"]), with_for_update=True)
        if found is None or found.outcome is not None or found.site != current_site():
            raise HTTPException(404, "no such proposal waiting")
        found.outcome, found.decided_by, found.decided_at = (
            "withdrawn",
            signed.person.name,
            state.now(),
        )
        chain.append(
            s,
            at=state.now(),
            kind="policy.withdraw",
            actor=signed.person.name,
            subject=f"policy {state.fs.policy.source}",
            reason=f"proposal {found.id} by {found.proposed_by}",
            details={"proposal": found.id, **actor_details(request)},
        )
    return see_other("/policy")
