"""``pulling-agent jobs``: list, run, pause, resume and inspect scheduled jobs, through an
agent's API or, with ``--mongodb-uri``, straight through MongoDB (``run`` needs an agent)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pulling_agent.cli.options import DEFAULT_URL, AsJson, MongoUri, Token, Url
from pulling_agent.cli.remote import CtlError, Direct, direct, http
from pulling_agent.cli.terminal import echo_json, short_time, show, table
from pulling_agent.text import cell, print_error

app = typer.Typer(help="Scheduled jobs: each fire runs once across the fleet.")
JobArg = Annotated[str, typer.Argument(help="The job id.")]


def _fail(exc: CtlError) -> typer.Exit:
    print_error(f"pulling-agent jobs: {exc}")
    return typer.Exit(1)


def _call(
    url: str, token: str | None, uri: str | None, method: str, path: str, local: Any, **params: Any
) -> Any:
    try:
        if uri:
            return direct(local, uri)
        return http(method, url, path, token, **params)
    except CtlError as exc:
        raise _fail(exc) from None


def _print(result: Any, as_json: bool) -> None:
    echo_json(result, indent=None if as_json else 2)


@app.command("list")
def list_jobs(
    url: Url = DEFAULT_URL,
    token: Token = None,
    mongodb_uri: MongoUri = None,
    as_json: AsJson = False,
) -> None:
    """Every job: next fire time, last outcome, paused, orphaned."""

    async def local(d: Direct) -> Any:
        return await d.jobs.list_jobs()

    jobs = _call(url, token, mongodb_uri, "GET", "/api/jobs", local)
    if as_json:
        _print(jobs, True)
        return
    listed = table(
        f"{len(jobs)} scheduled jobs",
        *("job", "trigger", "next fire", "last outcome", "paused", "orphaned"),
    )
    for job in jobs:
        listed.add_row(
            cell(job.get("id")),
            cell(job.get("trigger")),
            cell(short_time(job.get("next_fire_time"))),
            cell(job.get("last_outcome") or "-"),
            "yes" if job.get("paused") else "",
            "yes" if job.get("orphaned") else "",
        )
    show(listed)


@app.command()
def run(
    job_id: JobArg, url: Url = DEFAULT_URL, token: Token = None, as_json: AsJson = False
) -> None:
    """Run a job now on the agent at --url (it must declare the job)."""
    _print(_call(url, token, None, "POST", f"/api/jobs/{job_id}/run", None), as_json)


def _register_switch(name: str, paused: bool, summary: str) -> None:
    def switch(
        job_id: JobArg,
        url: Url = DEFAULT_URL,
        token: Token = None,
        mongodb_uri: MongoUri = None,
        as_json: AsJson = False,
    ) -> None:
        async def local(d: Direct) -> Any:
            return await d.jobs.set_paused(job_id, paused)

        path = f"/api/jobs/{job_id}/{name}"
        _print(_call(url, token, mongodb_uri, "POST", path, local), as_json)

    switch.__doc__ = summary
    app.command(name)(switch)


_register_switch("pause", True, "Stop firing a job, fleet-wide.")
_register_switch("resume", False, "Fire a job again from its next fire time after now.")


@app.command()
def history(
    job_id: JobArg,
    limit: Annotated[int, typer.Option(help="Runs to show.")] = 20,
    url: Url = DEFAULT_URL,
    token: Token = None,
    mongodb_uri: MongoUri = None,
    as_json: AsJson = False,
) -> None:
    """A job's runs, newest first: fire time, agent, outcome, error."""

    async def local(d: Direct) -> Any:
        return await d.jobs.runs(job_id, limit)

    runs = _call(url, token, mongodb_uri, "GET", f"/api/jobs/{job_id}/runs", local, limit=limit)
    if as_json:
        _print(runs, True)
        return
    shown = table(cell(f"runs of {job_id}"), "fire time", "agent", "outcome", "attempts", "error")
    for r in runs:
        error = (r.get("result") or {}).get("error") or ""
        shown.add_row(
            cell(short_time(r.get("fire_time"))),
            cell(r.get("agent")),
            cell(r.get("outcome")),
            cell(r.get("attempts", 1)),
            cell(error, 120),
        )
    show(shown)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="jobs")
