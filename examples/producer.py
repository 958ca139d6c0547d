"""A producer: puts typed work in the queue with the producer API.

    MONGODB_URI=mongodb://localhost:27017 MONGODB_DATABASE=app MONGODB_COLLECTION=work \\
        python -m examples.producer

Run an agent for it with ``HANDLERS=examples.worker:worker pulling-agent run``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from pymongo import MongoClient

from pulling_agent.client import Job, enqueue, enqueue_many


def main() -> None:
    client: MongoClient[dict[str, object]] = MongoClient(os.environ["MONGODB_URI"], tz_aware=True)
    work = client[os.environ["MONGODB_DATABASE"]][os.environ["MONGODB_COLLECTION"]]
    # idempotent: running this script twice enqueues each keyed document once
    welcome = enqueue(
        work, {"to": "ada@example.com", "subject": "Welcome"}, type="email", key="welcome-ada"
    )
    print("welcome email:", welcome.id, "new" if welcome.created else "already enqueued")
    results = enqueue_many(
        work,
        [
            Job({"to": "bob@example.com", "subject": "Receipt"}, type="email", priority=10),
            Job({"to": "carol@example.com", "unsubscribed": True}, type="email"),
            Job({"lines": [{"amount": 12.5}, {"amount": 7}]}, type="invoice", key="inv-1001"),
            Job(
                {"lines": [{"amount": 99}]},
                type="invoice",
                key="inv-1002",
                run_at=datetime.now(UTC) + timedelta(seconds=2),
            ),
            Job({"to": "nobody"}, type="email", delay=1),  # fails: not an address
        ],
    )
    for result in results:
        print(result.id, "new" if result.created else "already enqueued", result.key or "")
    client.close()


if __name__ == "__main__":
    main()
