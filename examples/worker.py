"""
An asyncio worker service: a queue consumer running jobs concurrently, one log per job.

Run it with ``python examples/worker.py [track.jsonl] [jobs]``; the logs go to a
JSON-lines file (``$ASYNCTRACK_EXAMPLE_OUT``, default ``worker.jsonl``).
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from dataclasses import dataclass

import asynctrack

tr = asynctrack.get_tracker("worker")


@dataclass
class Job:
    id: int
    kind: str
    size: int

    def __track__(self) -> dict[str, int | str]:
        # How a Job is recorded in params (instead of a truncated repr).
        return {"id": self.id, "kind": self.kind}


@tr.probe
async def fetch(job_id: int, size: int) -> bytes:
    await asyncio.sleep(random.uniform(0.001, 0.005))  # network I/O
    return b"x" * size


@tr.probe(exc=("data",))
def transform(data: bytes) -> int:
    return sum(data) % 997  # CPU work, a plain function


@tr.probe
async def store(job_id: int, checksum: int) -> None:
    await asyncio.sleep(0.001)
    if checksum % 13 == 0:
        raise OSError(f"disk full while storing job {job_id}")


@tr.probe(inc=("job",))
async def handle(job: Job, worker: int) -> None:
    """
    One job: the root call of its own log.
    """
    asynctrack.add_info("job_kind", job.kind)
    asynctrack.add_info("worker", worker)
    data = await fetch(job.id, job.size)
    # Two subtasks run concurrently; both land in this job's log.
    checksum, _ = await asyncio.gather(
        asyncio.to_thread(transform, data), fetch(job.id, job.size // 2)
    )
    await store(job.id, checksum)


async def consume(queue: asyncio.Queue[Job | None], worker: int, failed: list[int]) -> None:
    while (job := await queue.get()) is not None:
        try:
            await handle(job, worker)
        except OSError:
            failed.append(job.id)  # recorded in the log as status "error"; go on


async def main(path: str, jobs: int, concurrency: int = 8) -> None:
    async with asynctrack.tracking(sinks=[asynctrack.FileSink(path)]):
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=100)
        failed: list[int] = []
        consumers = [asyncio.create_task(consume(queue, w, failed)) for w in range(concurrency)]
        for i in range(jobs):
            await queue.put(Job(id=i, kind=random.choice(["resize", "thumbnail"]), size=64 + i))
        for _ in consumers:
            await queue.put(None)
        await asyncio.gather(*consumers)
    # tracking() has flushed and closed the file here.
    print(f"{jobs} jobs done ({len(failed)} failed), logs in {path}")


if __name__ == "__main__":
    default = os.environ.get("ASYNCTRACK_EXAMPLE_OUT", "worker.jsonl")
    out = sys.argv[1] if len(sys.argv) > 1 else default
    asyncio.run(main(out, int(sys.argv[2]) if len(sys.argv) > 2 else 200))
