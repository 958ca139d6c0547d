"""What a waiting document waits for, and why it may wait for ever (for ``doctor``, ``get``
and the console).

Agents release a waiting document when its dependencies end and close a batch when its
members end (queue.workflow); they cannot when a dependency was deleted (by hand, or by
retention while no agent ran after a crash), when documents wait for each other in a cycle
(made by hand: the producer only names documents that exist), when ``waiting_on`` was
edited by hand, or when a batch was never sealed (its producer stopped while enqueueing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulling_agent.queue import workflow as wf
from pulling_agent.queue.model import Document, Problem, Status
from pulling_agent.text import one_line

FIELDS = {wf.WAITING_ON: 1, wf.WAITING: 1, wf.BATCH: 1}
MAX_CYCLE_SHOWN = 5
_CANCEL = "cancel it (pulling-agent cancel ID) and enqueue it again with the dependencies it needs"


def _problem(field: str, value: Any, reason: str, fix: str) -> Problem:
    return Problem(field, type(value).__name__, reason, fix)


def shape_problems(doc: Mapping[str, Any]) -> list[Problem]:
    """What is wrong with a waiting document on its own (no look at other documents)."""
    batch = doc.get(wf.BATCH)
    if batch is not None:
        if not isinstance(batch, Mapping) or not isinstance(batch.get("id"), str):
            return [_problem(wf.BATCH, batch, "is not a batch the agents wrote", _CANCEL)]
        if batch.get(wf.STATE) == wf.OPEN_BATCH:
            return [
                _problem(
                    f"{wf.BATCH}.{wf.STATE}",
                    batch.get(wf.STATE),
                    "is open: its producer stopped while enqueueing the batch, so it never "
                    "learnt how many members there are",
                    "cancel it (pulling-agent cancel ID), or set batch.state to 'sealed' "
                    "and batch.size to the number of documents with its batch_id",
                )
            ]
        return []
    raw = doc.get(wf.WAITING_ON)
    keyed = wf.waits_of(doc)
    if not isinstance(raw, Mapping) or len(keyed) != len(raw) or doc.get(wf.WAITING) != len(raw):
        return [
            _problem(
                wf.WAITING_ON,
                raw,
                f"and waiting ({one_line(doc.get(wf.WAITING), 40)}) were not written by an "
                "agent: it is never released",
                _CANCEL,
            )
        ]
    return []


def examine(waiting: Iterable[Document], existing: Mapping[str, Any]) -> dict[Any, list[Problem]]:
    """Problems of waiting documents: their own shape, dependencies that do not exist
    (``existing``: key -> status of every dependency found), cycles among them."""
    docs = list(waiting)
    found: dict[Any, list[Problem]] = {}
    for doc in docs:
        problems = shape_problems(doc)
        for key, dep in wf.waits_of(doc).items():
            if key not in existing:
                problems.append(
                    _problem(
                        f"{wf.WAITING_ON}.{key}",
                        dep,
                        f"waits for {one_line(dep, 100)}, which does not exist (deleted by "
                        "hand, or by retention while no agent ran)",
                        f"cancel it, or $unset {wf.WAITING_ON}.{key} and lower waiting by 1",
                    )
                )
        if problems:
            found[doc.get("_id")] = problems
    for cycle in cycles(docs):
        shown = " -> ".join(one_line(i, 60) for i in cycle[:MAX_CYCLE_SHOWN])
        for doc_id in cycle:
            found.setdefault(doc_id, []).append(
                _problem(
                    wf.WAITING_ON,
                    "cycle",
                    f"waits in a cycle ({shown} -> ...): none of them can ever start",
                    "cancel one of them (its dependents are cancelled with it)",
                )
            )
    return found


def cycles(docs: Iterable[Mapping[str, Any]]) -> list[list[Any]]:
    """Cycles among waiting documents (each listed once), following ``waiting_on``."""
    by_key = {k: d for d in docs if (k := wf.key_or_none(d.get("_id"))) is not None}
    edges = {k: [w for w in wf.waits_of(d) if w in by_key] for k, d in by_key.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    result = []
    for start in edges:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:  # iterative depth-first search: chains may be long
            node, i = stack.pop()
            if i == 0:
                state[node] = 1
                path.append(node)
            if i < len(edges[node]):
                stack.append((node, i + 1))
                nxt = edges[node][i]
                if state.get(nxt) == 1:
                    loop = path[path.index(nxt) :]
                    result.append([by_key[k].get("_id") for k in loop])
                elif not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                path.pop()
    return result


def _hashable(doc_id: Any) -> bool:
    try:
        wf.dep_key(doc_id)
    except Exception:
        return False
    return True


def progress(then: Mapping[str, Any]) -> str:
    """A batch's progress as one line, from its then document."""
    batch = then.get(wf.BATCH)
    if not isinstance(batch, Mapping):
        return "not a batch"
    counts = ", ".join(f"{one_line(batch.get(o), 20)} {o}" for o in wf.OUTCOMES)
    state = one_line(batch.get(wf.STATE), 20)
    status = one_line(then.get("status"), 20)
    return f"{counts} of {one_line(batch.get('size'), 20)} ({state}); then job {status}" + (
        " (ran or runs with the summary)" if status != Status.WAITING.value else ""
    )
