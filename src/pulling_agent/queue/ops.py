"""Multi-step queue operations written once, run by the async store and by both clients.

A *flow* is a generator that yields one operation at a time and receives its result, so
the logic of a multi-round-trip operation (settling a workflow, enqueueing after other
documents) has no I/O of its own: :func:`run_async` runs it on a PyMongo
``AsyncCollection`` (the agents, the async client), :func:`run_sync` on a ``Collection``
(the sync client), and a test can drive it by hand.

Both runners take the caller's ``session`` (a PyMongo ``ClientSession``/``AsyncClientSession``,
or None) and send every command of the flow with it, so a flow run inside the caller's
transaction is part of it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pymongo import ASCENDING, ReturnDocument, UpdateMany, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.client_session import ClientSession
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError, OperationFailure

Document = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Find:
    """-> list of documents"""

    filter: Document
    projection: Document | None = None
    limit: int = 0
    skip: int = 0
    sort: str | None = None  # one field, ascending


@dataclass(frozen=True, slots=True)
class Update:
    """-> how many documents it modified"""

    filter: Document
    update: Document
    many: bool = False


@dataclass(frozen=True, slots=True)
class Bulk:
    """-> how many documents it modified (ordered: one request after the other)"""

    requests: Sequence[UpdateOne | UpdateMany]


@dataclass(frozen=True, slots=True)
class Bump:
    """``find_one_and_update`` -> the document after the update (projected), or None"""

    filter: Document
    update: Document
    projection: Document


@dataclass(frozen=True, slots=True)
class Aggregate:
    """-> list of result documents"""

    pipeline: list[Document]


@dataclass(frozen=True, slots=True)
class Insert:
    """``insert_many(ordered=False)`` -> None, or the ``BulkWriteError``'s details"""

    documents: list[Document]


@dataclass(frozen=True, slots=True)
class CreateIndex:
    """-> None, or the ``OperationFailure`` that refused it"""

    keys: list[tuple[str, int]]
    name: str
    options: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Note:
    """Not a command: something worth telling (a batch closed...), handed to the runner's
    ``on_note`` (-> None)."""

    event: str
    fields: Mapping[str, Any]


Command = Find | Update | Bulk | Bump | Aggregate | Insert | CreateIndex
Op = Command | Note
Flow = Generator[Op, Any, T]
OnNote = Callable[[Note], None]


def _ignore(note: Note) -> None:
    return None


async def _perform_async(
    op: Command, collection: AsyncCollection[Document], session: AsyncClientSession | None
) -> Any:
    if isinstance(op, Find):
        sort = [(op.sort, ASCENDING)] if op.sort else None
        cursor = collection.find(
            op.filter, op.projection, limit=op.limit, skip=op.skip, sort=sort, session=session
        )
        return await cursor.to_list()
    if isinstance(op, Update):
        write = collection.update_many if op.many else collection.update_one
        return (await write(op.filter, op.update, session=session)).modified_count
    if isinstance(op, Bulk):
        requests = list(op.requests)
        return (await collection.bulk_write(requests, session=session)).modified_count
    if isinstance(op, Bump):
        return await collection.find_one_and_update(
            op.filter,
            op.update,
            op.projection,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
    if isinstance(op, Aggregate):
        return await (await collection.aggregate(op.pipeline, session=session)).to_list()
    try:
        if isinstance(op, Insert):
            await collection.insert_many(op.documents, ordered=False, session=session)
        else:
            await collection.create_index(op.keys, name=op.name, session=session, **op.options)
    except BulkWriteError as exc:
        return exc.details
    except OperationFailure as exc:
        return exc
    return None


def _perform_sync(
    op: Command, collection: Collection[Document], session: ClientSession | None
) -> Any:
    if isinstance(op, Find):
        sort = [(op.sort, ASCENDING)] if op.sort else None
        return collection.find(
            op.filter, op.projection, limit=op.limit, skip=op.skip, sort=sort, session=session
        ).to_list()
    if isinstance(op, Update):
        write = collection.update_many if op.many else collection.update_one
        return write(op.filter, op.update, session=session).modified_count
    if isinstance(op, Bulk):
        return collection.bulk_write(list(op.requests), session=session).modified_count
    if isinstance(op, Bump):
        return collection.find_one_and_update(
            op.filter,
            op.update,
            op.projection,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
    if isinstance(op, Aggregate):
        return collection.aggregate(op.pipeline, session=session).to_list()
    try:
        if isinstance(op, Insert):
            collection.insert_many(op.documents, ordered=False, session=session)
        else:
            collection.create_index(op.keys, name=op.name, session=session, **op.options)
    except BulkWriteError as exc:
        return exc.details
    except OperationFailure as exc:
        return exc
    return None


def _advance(flow: Flow[T], reply: Any) -> tuple[Op | None, Any]:
    """The flow's next operation, or None and the flow's result when it is done."""
    try:
        return flow.send(reply), None
    except StopIteration as done:
        return None, done.value


async def perform_async(
    op: Op,
    collection: AsyncCollection[Document],
    on_note: OnNote = _ignore,
    session: AsyncClientSession | None = None,
) -> Any:
    """One operation of a flow: its result (None for a :class:`Note`, handed to ``on_note``)."""
    if isinstance(op, Note):
        return on_note(op)
    return await _perform_async(op, collection, session)


def perform_sync(
    op: Op,
    collection: Collection[Document],
    on_note: OnNote = _ignore,
    session: ClientSession | None = None,
) -> Any:
    if isinstance(op, Note):
        return on_note(op)
    return _perform_sync(op, collection, session)


async def run_async(
    flow: Flow[T],
    collection: AsyncCollection[Document],
    on_note: OnNote = _ignore,
    session: AsyncClientSession | None = None,
) -> T:
    op, result = _advance(flow, None)
    while op is not None:
        op, result = _advance(flow, await perform_async(op, collection, on_note, session))
    return result  # type: ignore[no-any-return]


def run_sync(
    flow: Flow[T],
    collection: Collection[Document],
    on_note: OnNote = _ignore,
    session: ClientSession | None = None,
) -> T:
    op, result = _advance(flow, None)
    while op is not None:
        op, result = _advance(flow, perform_sync(op, collection, on_note, session))
    return result  # type: ignore[no-any-return]
