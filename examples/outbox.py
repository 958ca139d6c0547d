"""The outbox: an order and its ``ship`` job in one MongoDB transaction.

If the transaction aborts, there is no job; if it commits, the job exists. Transactions
need a replica set (or a sharded cluster): a single ``mongod`` refuses them.

    MONGODB_URI=mongodb://localhost:27017/?replicaSet=rs0 MONGODB_DATABASE=app \\
        MONGODB_COLLECTION=work python -m examples.outbox order-1001

``--fail`` makes the transaction abort after both writes: neither the order nor the job
is there afterwards. An agent with a handler for ``type: ship`` runs the committed jobs.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pymongo import MongoClient
from pymongo.client_session import ClientSession

from pulling_agent.client import enqueue


def place_order(client: MongoClient[dict[str, Any]], order_id: str, fail: bool) -> None:
    database = client[os.environ["MONGODB_DATABASE"]]
    orders, work = database["orders"], database[os.environ["MONGODB_COLLECTION"]]

    def in_transaction(session: ClientSession) -> None:
        orders.insert_one({"_id": order_id, "total": 42}, session=session)
        # the same session: the job is written in the order's transaction
        job = enqueue(
            work, {"order": order_id}, type="ship", key=f"ship:{order_id}", session=session
        )
        print("ship job", job.id, "new" if job.created else "already enqueued")
        if fail:
            raise RuntimeError("payment declined")  # aborts: neither order nor job

    with client.start_session() as session:
        # with_transaction commits, and retries on TransientTransactionError (write conflicts)
        session.with_transaction(in_transaction)


def main() -> None:
    client: MongoClient[dict[str, Any]] = MongoClient(os.environ["MONGODB_URI"], tz_aware=True)
    order_id = sys.argv[1] if len(sys.argv) > 1 else "order-1001"
    try:
        place_order(client, order_id, fail="--fail" in sys.argv)
        print("order", order_id, "placed")
    except RuntimeError as exc:
        print("order", order_id, "not placed:", exc)
    finally:
        client.close()


if __name__ == "__main__":
    main()
