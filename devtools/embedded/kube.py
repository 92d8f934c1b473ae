"""A real Kubernetes API emulator on loopback for tests and the demo, with fault injection.

`start_kube_emulator()` runs a kmock `KubernetesEmulator` as an HTTP server on a
free 127.0.0.1 port in a background thread; tests drive it with the official
`kubernetes` client, so requests go through real HTTP, JSON and the client's
(de)serialisation. `KubeEmulator.fail_next()` makes the next N API requests fail;
`KubeEmulator.settle_deployments()` stands in for the Deployment controller.

One emulator serves a whole test session, so its thousandth request must cost
what its first did, however many tests ran before: it keeps only the last
`REQUEST_LOG_SIZE` requests, routes each request by looking at that request
alone, and finds a named object by its key. (Left as it is, kmock keeps every
request and re-filters all of them for every request it serves, so each
request costs more than the one before.)

For chaos tests it also keeps a bounded log of the writes it applied (who sent
each, by User-Agent, and the spec it left), can fail requests at random
(`fail_at_random`), and can ask a check about every write before applying it
(`watch_writes`), e.g. whether its sender held the controller lease just then.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import copy
import itertools
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import attrs
import kmock
from kubernetes import client as kube

from k8s.client import build_api_client

# Enough for any one test's assertions on the requests it made.
REQUEST_LOG_SIZE = 10_000
DEPLOYMENTS = "apps/v1/deployments"

# The request being routed. A context variable belongs to the asyncio task that
# set it, so requests served at the same time each see their own.
_routing: contextvars.ContextVar[kmock.Request | None] = contextvars.ContextVar("routing", default=None)


class RequestLog(collections.deque):
    """The last `maxlen` requests served, and how many were ever served.

    `served` is a mark that never shifts when old requests fall off the log,
    unlike a position in it.
    """

    def __init__(self, maxlen: int) -> None:
        super().__init__(maxlen=maxlen)
        self.served = 0

    def append(self, request) -> None:
        super().append(request)
        self.served += 1

    def since(self, mark: int) -> list:
        """The requests served after `mark` (an earlier `served`)."""
        newer = self.served - mark
        if newer > len(self):
            raise RuntimeError(f"{newer} requests were served since the mark; the log keeps the last {len(self)}")
        return list(itertools.islice(self, len(self) - newer, None))


@dataclass(frozen=True)
class Fault:
    """One injected failure: the HTTP status and Kubernetes reason to answer with."""

    status: int
    reason: str
    methods: frozenset[str] | None = None  # None: any method

    def applies_to(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


@dataclass(frozen=True)
class Write:
    """One write the emulator applied: its place among all requests served, who sent it, and what it left."""

    served: int  # the request's number (`KubeEmulator.mark()` counts the same way)
    method: str
    namespace: str | None
    name: str | None
    user_agent: str
    spec: dict | None  # the object's spec after the write; None once deleted
    check: str | None = None  # what the `watch_writes` check said about it, if one was set


_WRITES = frozenset({kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE})


@attrs.define(kw_only=True)
class _FaultyEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with injected faults and the API server's bookkeeping.

    On top of kmock it stamps `metadata.resourceVersion` on every write, bumps
    `metadata.generation` when `spec` changes, and answers 409 to a write that
    carries a stale resourceVersion, as a real API server does. It also costs
    the same per request however many it served before (see the module's doc).
    """

    # Faults are checked before the emulator touches its store: a kmock reaction
    # would answer 500/409 only after the write had already been applied, which a
    # real API server never does, and would make retry tests pass for the wrong reason.
    faults: collections.deque = attrs.field(factory=collections.deque)
    faults_lock: threading.Lock = attrs.field(factory=threading.Lock)
    last_resource_version: int = 0
    fault_rate: float = 0.0  # the chance that any request without a queued fault fails with a 500
    fault_random: random.Random = attrs.field(factory=random.Random)
    writes: collections.deque = attrs.field(factory=lambda: collections.deque(maxlen=REQUEST_LOG_SIZE))
    write_check: Callable[[str], str | None] | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._requests = RequestLog(REQUEST_LOG_SIZE)
        # Each reaction keeps the requests it answered as well; bounded, so that
        # a long session does not hold on to every request it ever served.
        for reaction in self._payloads:
            object.__setattr__(reaction, "_requests", collections.deque(maxlen=REQUEST_LOG_SIZE))

    def __iter__(self):
        # kmock routes a request by asking each reaction `request in reaction`,
        # which iterates the handler's whole request log through the reaction's
        # filters. The emulator's reactions filter by method, path and resource,
        # never by what came before (no slices such as `kmock['get'][:1]`; do
        # not add one), so while a request is being routed the answer depends
        # on that request alone.
        routing = _routing.get()
        if routing is not None:
            yield routing
        else:
            yield from self._requests

    async def _handle(self, request):
        routing = _routing.set(request)
        try:
            if request.resource is not None:
                fault = self._take_fault(str(request.method.value))
                if fault is not None:
                    raise kmock.KubernetesError(
                        status=fault.status, reason=fault.reason,
                        message=f"injected fault: {fault.status} {fault.reason}",
                        details={"injected": True},
                    )
                if request.action == kmock.action.UPDATE:
                    self._check_resource_version(request)
            served, check = self._requests.served, None
            writing = request.resource is not None and request.action in _WRITES
            user_agent = request.headers.get("User-Agent", "") if writing else ""
            if writing and self.write_check is not None:
                # Off the loop: the check may block (a database query).
                check = await asyncio.get_running_loop().run_in_executor(None, self.write_check, user_agent)
            response = await super()._handle(request)
            if writing:
                self._log_write(request, served, user_agent, check)
            return response
        finally:
            _routing.reset(routing)

    def _log_write(self, request, served: int, user_agent: str, check: str | None) -> None:
        name = request.name or ((request.data or {}).get("metadata") or {}).get("name")
        namespace = request.namespace or ((request.data or {}).get("metadata") or {}).get("namespace")
        key = (request.resource, namespace, name)
        stored = self.objects[key] if name and key in self.objects else None
        spec = None if stored is None or stored.deleted else copy.deepcopy(stored.raw.get("spec"))
        self.writes.append(Write(served, str(request.method.value), namespace, name, user_agent, spec, check))

    def _KubernetesEmulator__get_objs(self, request, strict):
        # Overrides kmock's private `__get_objs`, which its fetch, create,
        # update and delete use: it compares every stored object with the
        # request, and objects pile up over a session (each test has its own
        # namespace), so a named object is found by its key instead.
        if strict and request.name is not None:
            key = (request.resource, request.namespace, request.name)
            return [self.objects[key]] if key in self.objects else []
        return super()._KubernetesEmulator__get_objs(request, strict)

    async def _serve_create(self, request):
        name = request.name or (request.data.get("metadata") or {}).get("name")
        namespace = request.namespace or (request.data.get("metadata") or {}).get("namespace")
        self._stamp(self.objects[request.resource, namespace, name])
        return await super()._serve_create(request)

    async def _serve_update(self, request):
        self._stamp(self.objects[request.resource, request.namespace, request.name])
        return await super()._serve_update(request)

    def _check_resource_version(self, request) -> None:
        if isinstance(request.data, list):  # JSON patch
            wanted = next((op.get("value") for op in request.data
                           if op.get("path") == "/metadata/resourceVersion"), None)
        else:
            wanted = ((request.data or {}).get("metadata") or {}).get("resourceVersion")
        key = (request.resource, request.namespace, request.name)
        if wanted is None or key not in self.objects or self.objects[key].deleted:
            return
        current = (self.objects[key].raw.get("metadata") or {}).get("resourceVersion")
        if current is not None and current != wanted:
            raise kmock.KubernetesError(
                status=409, reason="Conflict",
                message="the object has been modified; please apply your changes "
                        "to the latest version and try again")

    def _stamp(self, obj) -> None:
        # `.raw` is a shallow copy of the stored version: its nested dicts are
        # the stored ones, so this edits the version just written in place.
        raw = obj.raw
        metadata = raw.setdefault("metadata", {})
        versions = [v for v in obj.history if v is not None]
        previous = versions[-2].raw if len(versions) >= 2 else None
        generation = (previous or {}).get("metadata", {}).get("generation", 0)
        if previous is None or previous.get("spec") != raw.get("spec"):
            generation += 1
        self.last_resource_version += 1
        metadata["resourceVersion"] = str(self.last_resource_version)
        metadata["generation"] = generation

    def _take_fault(self, method: str) -> Fault | None:
        with self.faults_lock:
            for index, fault in enumerate(self.faults):
                if fault.applies_to(method):
                    del self.faults[index]
                    return fault
            if self.fault_rate and self.fault_random.random() < self.fault_rate:
                return Fault(500, "InternalError")
        return None


class KubeEmulator:
    """A running emulator: its URL, a client factory, its objects and requests."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._handler: _FaultyEmulator | None = None
        self.url = ""
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)

    def start(self) -> "KubeEmulator":
        self._thread.start()
        if not self._ready.wait(timeout=10):
            raise RuntimeError("the Kubernetes emulator did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("the Kubernetes emulator failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        if self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=10)

    def api_client(self) -> kube.ApiClient:
        """A fresh `ApiClient` for this emulator, built the way production builds one."""
        return build_api_client(host=self.url)

    # --- fault injection -------------------------------------------------

    def fail_next(self, count: int, *, status: int = 500, reason: str = "InternalError",
                  methods: tuple[str, ...] | None = None) -> None:
        """Answer the next `count` API requests (optionally only these HTTP methods) with `status`."""
        fault = Fault(status, reason, frozenset(m.upper() for m in methods) if methods else None)
        with self.handler.faults_lock:
            self.handler.faults.extend([fault] * count)

    def fail_at_random(self, rate: float, *, seed: int | None = None) -> None:
        """Answer each request, with chance `rate`, with a 500 (queued `fail_next` faults go first)."""
        with self.handler.faults_lock:
            self.handler.fault_rate = rate
            self.handler.fault_random.seed(seed)

    def clear_faults(self) -> None:
        with self.handler.faults_lock:
            self.handler.faults.clear()
            self.handler.fault_rate = 0.0

    def pending_faults(self) -> int:
        with self.handler.faults_lock:
            return len(self.handler.faults)

    # --- state, read and written on the server's own loop -----------------

    def object(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The stored object as a plain dict, or None if absent or deleted."""
        def read():
            key = (kmock.resource(resource), namespace, name)
            if key not in self.handler.objects or self.handler.objects[key].deleted:
                return None
            return self.handler.objects[key].raw
        return self._on_loop(read)

    def versions(self, resource: str, namespace: str, name: str) -> int:
        """How many versions the emulator stored for the object (each write adds one)."""
        return self._on_loop(lambda: len(self.handler.objects[resource, namespace, name].history))

    def patch_object(self, resource: str, namespace: str, name: str, changes: dict) -> None:
        """Change a stored object directly, as a cluster controller would (e.g. status)."""
        self._on_loop(lambda: self.handler.objects[resource, namespace, name].patch(changes))

    def load_objects(self, resource: str, objects: list[dict[str, Any]]) -> None:
        """Store many objects at once, as if created and settled long ago (no request, no write log):
        for benchmarks that need thousands of Deployments in place in seconds."""
        def load():
            for obj in objects:
                meta = obj["metadata"]
                self.handler.objects[kmock.resource(resource), meta["namespace"], meta["name"]] = obj
        self._on_loop(load)

    def settle_deployments(self, namespace: str, *names: str) -> None:
        """Do the Deployment controller's part: every desired pod of each named
        Deployment updated, ready and available, at its current generation.

        The emulator stores objects but runs no controllers, and the rollout
        controller waits for ready pods before it analyses or promotes. A name
        with no Deployment (a canary not created yet) is skipped, and one
        already settled is not written again.
        """
        for name in names:
            current = self.object(DEPLOYMENTS, namespace, name)
            if current is None:
                continue
            replicas = current["spec"].get("replicas", 1)
            status = {"observedGeneration": current["metadata"].get("generation"), "replicas": replicas,
                      "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
            if (current.get("status") or {}) != status:
                self.patch_object(DEPLOYMENTS, namespace, name, {"status": status})

    def watch_writes(self, check: Callable[[str], str | None] | None) -> None:
        """Call `check(user_agent)` before applying each write, in a thread of its own, and keep what it
        returns with the write (`writes()`); None stops."""
        self.handler.write_check = check

    def writes(self, since: int | None = None) -> list[Write]:
        """The writes applied after the mark `since` (or every one the log still holds), oldest first."""
        def read():
            return [w for w in self.handler.writes if since is None or w.served >= since]
        return self._on_loop(read)

    def mark(self) -> int:
        """A point in the request log: `requests(since=mark)` lists the API requests served after it."""
        return self._on_loop(lambda: self.handler._requests.served)

    def requests(self, since: int | None = None) -> list[tuple[str, str, str | None, str | None, str | None, dict]]:
        """(method, group, plural, subresource, name, query) of each API request served since
        the mark `since`, or of each one the log still holds (the last `REQUEST_LOG_SIZE`)."""
        def read():
            log = self.handler._requests
            served = list(log) if since is None else log.since(since)
            return [
                (str(r.method.value), r.resource.group, r.resource.plural, r.subresource, r.name,
                 dict(r.params))
                for r in served if r.resource is not None
            ]
        return self._on_loop(read)

    @property
    def handler(self) -> _FaultyEmulator:
        if self._handler is None:
            raise RuntimeError("the emulator is not running")
        return self._handler

    def _on_loop(self, fn):
        async def call():
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout=10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() instead of dying silently
            self._startup_error = exc
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        handler = _FaultyEmulator()
        async with handler, kmock.Server(handler, host="127.0.0.1") as server:
            self._handler = handler
            self.url = f"http://127.0.0.1:{server.port}"
            self._ready.set()
            await self._stopping.wait()


def start_kube_emulator() -> KubeEmulator:
    """Start an emulator on a free loopback port; call `.stop()` when done."""
    return KubeEmulator().start()
