"""The emulator's Batch API: jobs that move PENDING → RUNNING → SUCCEEDED as time passes.

A job holds its requests (inlined, or read from an uploaded JSONL file). Its
state is a function of the time since it was created, so a client that polls,
stops, and comes back later sees what it would see with Google. The answers
are computed once, when the job first reads as succeeded, by the same code
that answers single requests; they come back inlined with each request's
``metadata``, or as a generated JSONL file for file-based jobs.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional

from .wire import EmulatorRequest, timestamp

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"

Answer = Callable[[EmulatorRequest], tuple[int, dict]]
"""Answers one request: ``(HTTP status, body)``, the body a reply or an error envelope."""


@dataclass
class EmulatedBatch:
    """One batch job.

    Attributes:
        requests: ``(metadata, request)`` pairs, in input order.
        from_file: whether the input came as a JSONL file (results then go to one).
    """

    id: str
    model: str
    display_name: str
    requests: list[tuple[dict, EmulatorRequest]]
    created: float
    from_file: bool = False
    results: Optional[list[dict]] = None
    results_file: Optional[str] = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return f"batches/{self.id}"


class BatchStore:
    """The emulator's batch jobs.

    Args:
        pending_seconds: how long a new job stays ``PENDING``.
        running_seconds: how long it then stays ``RUNNING`` before ``SUCCEEDED``.
    """

    def __init__(self, pending_seconds: float = 0.5, running_seconds: float = 1.0):
        self.pending_seconds = pending_seconds
        self.running_seconds = running_seconds
        self._jobs: dict[str, EmulatedBatch] = {}
        self._lock = threading.Lock()
        self.created = 0

    def create(self, model: str, display_name: str, requests: list[tuple[dict, EmulatorRequest]],
               *, from_file: bool = False) -> EmulatedBatch:
        job = EmulatedBatch(id=uuid.uuid4().hex[:16], model=model, display_name=display_name,
                            requests=requests, created=time.monotonic(), from_file=from_file)
        with self._lock:
            self._jobs[job.id] = job
            self.created += 1
        return job

    def get(self, job_id: str) -> Optional[EmulatedBatch]:
        with self._lock:
            return self._jobs.get(job_id)

    def state(self, job: EmulatedBatch) -> str:
        age = time.monotonic() - job.created
        if age < self.pending_seconds:
            return "BATCH_STATE_PENDING"
        if age < self.pending_seconds + self.running_seconds:
            return "BATCH_STATE_RUNNING"
        return "BATCH_STATE_SUCCEEDED"

    def body(self, job: EmulatedBatch, answer: Answer,
             write_results_file: Callable[[bytes], str]) -> dict:
        """The job resource; once succeeded, with its answers (computed on first read)."""
        state = self.state(job)
        total = len(job.requests)
        done = state == "BATCH_STATE_SUCCEEDED"
        metadata: dict = {
            "@type": BATCH_TYPE,
            "model": f"models/{job.model}",
            "displayName": job.display_name,
            "state": state,
            "createTime": _timestamp(job.created),
            "updateTime": _timestamp(time.monotonic()),
            "batchStats": {
                "requestCount": str(total),
                "pendingRequestCount": str(0 if done else total),
            },
        }
        body: dict = {"name": job.name, "metadata": metadata}
        if not done:
            return body
        with job.lock:
            if job.results is None:
                job.results = [self._result(meta, request, answer) for meta, request in job.requests]
                if job.from_file:
                    lines = "".join(json.dumps(r) + "\n" for r in job.results)
                    job.results_file = write_results_file(lines.encode())
        failed = sum(1 for r in job.results if "error" in r)
        metadata["batchStats"].update(successfulRequestCount=str(total - failed),
                                      failedRequestCount=str(failed))
        metadata["endTime"] = metadata["updateTime"]
        if job.from_file:
            metadata["output"] = {"responsesFile": job.results_file}
        else:
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": [
                {**({"response": r["response"]} if "response" in r else {"error": r["error"]}),
                 "metadata": r["metadata"]}
                for r in job.results
            ]}}
        body["done"] = True
        return body

    @staticmethod
    def _result(meta: dict, request: EmulatorRequest, answer: Answer) -> dict:
        status, reply = answer(request)
        entry: dict = {"metadata": meta}
        if "key" in meta:
            entry["key"] = meta["key"]
        if status == 200:
            entry["response"] = reply
        else:
            entry["error"] = reply.get("error", reply)
        return entry


_STARTED = time.time() - time.monotonic()


def _timestamp(monotonic: float) -> str:
    return timestamp(datetime.datetime.fromtimestamp(_STARTED + monotonic, datetime.timezone.utc))
