"""The console's live updates: a server-sent event stream of the tenant's
sandbox status changes (GET /api/v1/console/events), opened with a
single-use ticket from an authenticated POST because a browser EventSource
cannot send X-Api-Key. Read here with a real HTTP client while sandboxes
are created, stopped and deleted through the SDK."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid

import httpx

from helpers import new_tenant_key

TICKETS = "/api/v1/console/event-tickets"


class Stream:
    """A background reader of one event stream: (event, data) pairs."""

    def __init__(self, endpoint: str, key: str):
        resp = httpx.post(f"{endpoint}{TICKETS}", headers={"X-Api-Key": key})
        assert resp.status_code == 200, resp.text
        ticket = resp.json()
        assert ticket["expires_in_seconds"] > 0
        self.url = f"{endpoint}{ticket['url']}"
        self.events: queue.Queue = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self._closed = threading.Event()
        self._opened = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        assert self._opened.wait(10), "the stream did not answer"

    def _read(self) -> None:
        try:
            self._read_events()
        except httpx.HTTPError:
            pass  # the server went away (end of the session)
        finally:
            self._opened.set()

    def _read_events(self) -> None:
        with httpx.Client(timeout=httpx.Timeout(5, read=None)) as http:
            with http.stream("GET", self.url) as resp:
                self.status = resp.status_code
                self.content_type = resp.headers.get("content-type", "")
                self._opened.set()
                event, data = "message", []
                for line in resp.iter_lines():
                    if self._closed.is_set():
                        return
                    if line == "":
                        if data:
                            self.events.put((event, json.loads("\n".join(data))))
                        event, data = "message", []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())

    def expect(self, kind: str, timeout: float = 60, **fields) -> dict:
        """The next `kind` event whose data has `fields` (others skipped)."""
        deadline = time.time() + timeout
        seen = []
        while time.time() < deadline:
            try:
                event, data = self.events.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                break
            seen.append((event, data))
            if event == kind and all(data.get(k) == v for k, v in fields.items()):
                return data
        raise AssertionError(f"no {kind} {fields} within {timeout}s; saw {seen}")

    def drain(self) -> list:
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    def close(self) -> None:
        self._closed.set()


def test_events_follow_a_sandbox_through_its_life(srv, client):
    mine = Stream(srv.endpoint, srv.api_key)
    other_tenant = Stream(srv.endpoint, new_tenant_key(srv, "ev"))
    try:
        assert mine.status == 200 and mine.content_type.startswith("text/event-stream")
        mine.expect("ready", timeout=10)
        other_tenant.expect("ready", timeout=10)
        name = f"events-{uuid.uuid4().hex[:6]}"
        started = time.time()
        client.create_sandbox(name=name, timeout=120)
        ready = mine.expect("sandbox", name=name, status="ready")
        assert ready["id"] and "status_message" in ready
        client.stop_sandbox(name)
        stopped_at = time.time()
        mine.expect("sandbox", name=name, status="stopped", timeout=10)
        # Pushed within about a second (the stream checks every second).
        assert time.time() - stopped_at < 5
        client.delete_sandbox(name)
        mine.expect("deleted", name=name)
        assert time.time() - started < 180
        # Another tenant's stream never mentions this sandbox.
        leaked = [e for e in other_tenant.drain() if e[1].get("name") == name]
        assert leaked == []
    finally:
        mine.close()
        other_tenant.close()


def test_the_stream_needs_a_fresh_ticket(srv):
    resp = httpx.post(f"{srv.endpoint}{TICKETS}")
    assert resp.status_code == 401
    assert resp.json()["detail"]["error"] == "Unauthorized"
    no_ticket = httpx.get(f"{srv.endpoint}/api/v1/console/events")
    assert no_ticket.status_code == 400 and "ticket" in no_ticket.json()["detail"]["message"]
    stream = Stream(srv.endpoint, srv.api_key)
    try:
        stream.expect("ready", timeout=10)
        # Spent: the browser's automatic reconnection is refused.
        again = httpx.get(stream.url)
        assert again.status_code == 401, again.text
    finally:
        stream.close()
    bogus = httpx.get(f"{srv.endpoint}/api/v1/console/events?ticket=" + "0" * 64)
    assert bogus.status_code == 401
