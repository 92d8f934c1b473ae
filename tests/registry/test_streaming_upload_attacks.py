"""Hostile clients and unlucky networks against the streamed upload, `PUT models/{name}/versions/stream`.

In-process tests pin what the headers alone decide; the rest go through a real
gunicorn server (its default sync worker, what the image runs, and the gthread
worker where keep-alive changes what a body reader must get right): lying
Content-Lengths, pipelined requests, refusals before the body is read, and
that every failure leaves no staging file and no extra thread behind.
"""

import base64
import hashlib
import json
import re
import socket
import threading
from types import SimpleNamespace
from pathlib import Path
from urllib.parse import urlparse

import pytest

from controlplane.accounts import issue_token
from controlplane.errors import InvalidInput
from controlplane.roles import Role
from registry.models import Blob, ModelVersion, RegisteredModel
from registry.upload import stage_streamed_body
from tests.factories import tiny_onnx
from tests.support.artifacts import filesystem_only
from tests.support.webserver import gunicorn_server, worker_pids

STREAM = "/api/v1/models/resnet/versions/stream"
# Keep-alive matters only where the worker keeps connections: gunicorn's sync worker closes after each answer.
GTHREAD = {"GUNICORN_CMD_ARGS": "--worker-class gthread --threads 2 --keep-alive 5"}
# For counting threads: gthread's pool starts threads as connections come, so with more than one a busy
# machine would show the pool's growth as a leak.
GTHREAD_ONE_THREAD = {"GUNICORN_CMD_ARGS": "--worker-class gthread --threads 1 --keep-alive 5"}


def _put(client, data: bytes, **headers):
    return client.generic("PUT", STREAM, data, content_type="application/octet-stream", **headers)


# ------------------------------------------------------------------ in process

@pytest.mark.django_db
@pytest.mark.parametrize("raw_length, status, code", [
    ("9" * 5000, 413, "payload_too_large"),  # int() refuses more than 4300 digits: a ValueError, once a 500
    ("0" * 5000 + "7", 400, "upload_interrupted"),  # seven bytes, said at length: read, found short
])
def test_a_content_length_of_thousands_of_digits_gets_a_stable_code(ci, resnet, stored_files, raw_length, status,
                                                                    code):
    response = _put(ci, tiny_onnx(), CONTENT_LENGTH=raw_length)
    assert response.status_code == status, response.content[:300]
    assert response.json()["code"] == code
    assert stored_files() == [] and ModelVersion.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("bundle", [
    "[" * 5000,  # json.loads raises RecursionError, which the bundle check did not expect: a 500
    '{"a": ' * 3000,
    "\xff\xfe not utf-8",
    "[1, 2]",
])
def test_a_malformed_bundle_header_is_refused_before_the_body_is_read(ci, resnet, stored_files, bundle):
    encoded = base64.b64encode(bundle.encode("latin-1")).decode()
    response = _put(ci, tiny_onnx(), HTTP_X_MLCP_BUNDLE=encoded)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "invalid_bundle"
    assert stored_files() == [] and ModelVersion.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize("encoded, stored", [
    ("..%2F..%2Fetc%2Fpasswd", "passwd"),
    ("..%5C..%5Cwindows%5Cevil.onnx", "evil.onnx"),
    ("model%00.onnx%0d%0aSet-Cookie: x", "model.onnxSet-Cookie: x"),
    ("%E2%80%AEx%E2%80%8Fnnx.exe", "xnnx.exe"),  # bidi override and mark: how a name passes for another
    ("%2e%2e", "model"),
    ("%ff%fe.onnx", "\ufffd\ufffd.onnx"),  # not UTF-8: replaced, not a 500
    ("a" * 7000, "a" * 200),
])
def test_filename_tricks_are_reduced_to_a_plain_name(ci, resnet, encoded, stored):
    response = _put(ci, tiny_onnx(), HTTP_X_MLCP_FILENAME=encoded)
    assert response.status_code == 201, response.json()
    assert response.json()["artifact_name"] == stored


@pytest.fixture
def gunicorn_request():
    """A request parsed by gunicorn's own parser from a real socket, as its workers see it: (client socket,
    the WSGI environ of the request the server side read)."""
    from gunicorn.config import Config
    from gunicorn.http.parser import RequestParser

    server_side, client_side = socket.socketpair()

    def receive(head: bytes, length: int) -> dict:
        client_side.sendall(head)
        request = next(RequestParser(Config(), server_side, ("127.0.0.1", 0)))
        return {"wsgi.input": request.body, "gunicorn.socket": server_side, "CONTENT_LENGTH": str(length)}

    yield client_side, receive
    client_side.close()
    server_side.close()


def test_a_client_that_stops_sending_mid_body_frees_the_worker(gunicorn_request, isolated_artifacts, settings):
    """gunicorn's sockets have no timeout: without the reader's own deadline the upload would wait forever."""
    settings.MLCP_UPLOAD_STALL_S = 0.3
    client, receive = gunicorn_request
    body = tiny_onnx() * 100
    threads_before = threading.active_count()
    environ = receive(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body), len(body))
    client.sendall(body[: len(body) // 2])  # and then nothing, the connection left open
    refused = []

    def stage():
        try:
            stage_streamed_body(SimpleNamespace(META=environ), len(body))
        except InvalidInput as exc:
            refused.append(exc)

    staging = threading.Thread(target=stage, daemon=True)
    staging.start()
    staging.join(timeout=120)  # a bound for "never": without the reader's deadline it would wait forever
    assert not staging.is_alive(), "the upload still waits for a client that stopped sending"
    assert [exc.code for exc in refused] == ["upload_interrupted"]
    assert "stalled" in str(refused[0])
    # gunicorn must close this connection, not drain the rest or read it as the next request.
    assert environ["wsgi.input"].failed is True
    assert environ["gunicorn.socket"].gettimeout() is None  # left as gunicorn set it
    assert isolated_artifacts.staging() == []
    assert threading.active_count() == threads_before


def test_a_body_that_arrives_whole_is_staged_from_the_socket_and_the_count_left_is_zero(gunicorn_request,
                                                                                        isolated_artifacts):
    client, receive = gunicorn_request
    body = tiny_onnx(seed=5) * 200
    head = b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    environ = receive(head + body[:1000], len(body))  # gunicorn holds the head and a piece of the body
    client.sendall(body[1000:] + b"GET /next HTTP/1.1\r\n\r\n")
    staged = stage_streamed_body(SimpleNamespace(META=environ), len(body))
    try:
        assert (staged.digest, staged.size) == (hashlib.sha256(body).hexdigest(), len(body))
    finally:
        staged.discard()
    assert environ["wsgi.input"].reader.length == 0
    assert environ["wsgi.input"].read() == b""  # and the next request is still there for gunicorn's parser
    assert environ["wsgi.input"].reader.unreader.read(8) == b"GET /nex"


# -------------------------------------------------------- through a real server

@pytest.fixture
def tokens(transactional_db):
    RegisteredModel.objects.create(name="resnet")
    return {role: issue_token(f"{role.value}-bot", role) for role in (Role.CI, Role.VIEWER)}


def _exchange(base_url: str, raw: bytes, *, hang_up: bool = False) -> bytes:
    """Send `raw` bytes as they are, close the sending side, and return all the server answers."""
    url = urlparse(base_url)
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(raw)
        if hang_up:
            return b""
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(65536), b""))


def _head(base_url: str, token: str | None, lines: list[str], *, path: str = STREAM, method: str = "PUT") -> bytes:
    auth = [f"Authorization: Token {token}"] if token else []
    head = [f"{method} {path} HTTP/1.1", f"Host: {urlparse(base_url).netloc}", *auth, *lines]
    return ("\r\n".join(head) + "\r\n\r\n").encode()


def _statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def _codes(answer: bytes) -> list[str]:
    return [code.decode() for code in re.findall(rb'"code":\s*"([a-z_]+)"', answer)]


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)$", status, re.M).group(1))


def _staging(area) -> list[str]:
    return area.staging()


OCTETS = "Content-Type: application/octet-stream"


@pytest.mark.django_db(transaction=True)
@filesystem_only
def test_refusals_come_from_the_headers_before_a_byte_of_the_body_is_read(tokens, isolated_artifacts):
    """Each request declares a body and sends none: a server that read it would find it short (400
    upload_interrupted); the right answer comes from the headers alone."""
    declared = f"Content-Length: {64 * 1024 * 1024}"
    with gunicorn_server() as (base_url, _):
        anonymous = _exchange(base_url, _head(base_url, None, [OCTETS, declared]))
        forged = _exchange(base_url, _head(base_url, "not-a-token", [OCTETS, declared]))
        viewer = _exchange(base_url, _head(base_url, tokens[Role.VIEWER], [OCTETS, declared]))
        unknown_model = _exchange(base_url, _head(base_url, tokens[Role.CI], [OCTETS, declared],
                                                  path="/api/v1/models/nobody/versions/stream"))
        bad_metadata = _exchange(base_url, _head(base_url, tokens[Role.CI], [OCTETS, declared,
                                                                             "X-Mlcp-Metadata: {"]))
        # Other endpoints never read an octet-stream body: DRF refuses it unparsed.
        elsewhere = _exchange(base_url, _head(base_url, tokens[Role.CI], [OCTETS, declared], method="POST",
                                              path="/api/v1/models/"))
    assert (_statuses(anonymous), _codes(anonymous)) == ([401], ["not_authenticated"]), anonymous[:300]
    assert (_statuses(forged), _codes(forged)) == ([401], ["authentication_failed"]), forged[:300]
    assert (_statuses(viewer), _codes(viewer)) == ([403], ["permission_denied"]), viewer[:300]
    assert _statuses(unknown_model) == [404], unknown_model[:300]
    assert (_statuses(bad_metadata), _codes(bad_metadata)) == ([400], ["invalid_metadata"]), bad_metadata[:300]
    assert (_statuses(elsewhere), _codes(elsewhere)) == ([415], ["unsupported_media_type"]), elsewhere[:300]
    assert isolated_artifacts.files() == []


@pytest.mark.django_db(transaction=True)
def test_content_lengths_that_lie_about_their_form_are_refused_and_store_nothing(tokens, stored_files):
    # gunicorn refuses these itself (its own 400, before the app): the body's end would be ambiguous.
    body = tiny_onnx()
    heads = [["Content-Length: +%d" % len(body)], ["Content-Length: -1"],
             [f"Content-Length: {len(body)}", f"Content-Length: {len(body)}"],
             [f"Content-Length: {len(body)}", "Transfer-Encoding: chunked"], ["Content-Length: 0x10"],
             ["Content-Length: " + "9" * 5000]]
    with gunicorn_server() as (base_url, _):
        answers = [_exchange(base_url, _head(base_url, tokens[Role.CI], [OCTETS, *lines]) + body) for lines in heads]
    for lines, answer in zip(heads, answers):
        assert _statuses(answer) and _statuses(answer)[0] == 400, (lines, answer[:200])
    assert stored_files() == [] and ModelVersion.objects.count() == 0


def _upload_request(base_url: str, token: str, body: bytes, *extra: str) -> bytes:
    return _head(base_url, token, [OCTETS, f"Content-Length: {len(body)}", *extra]) + body


@pytest.mark.django_db(transaction=True)
@filesystem_only
def test_a_request_pipelined_behind_the_body_is_not_taken_for_artifact_bytes(tokens, isolated_artifacts):
    body = tiny_onnx(seed=1)
    with gunicorn_server() as (base_url, _):
        follower = _head(base_url, None, ["Connection: close"], path="/healthz", method="GET")
        answer = _exchange(base_url, _upload_request(base_url, tokens[Role.CI], body) + follower)
    assert _statuses(answer)[0] == 201, answer[:400]
    version = ModelVersion.objects.get()
    assert (version.blob.digest, version.blob.size) == (hashlib.sha256(body).hexdigest(), len(body))
    assert isolated_artifacts.staging() == []


@pytest.mark.django_db(transaction=True)
@filesystem_only
def test_keep_alive_pipelined_uploads_each_get_their_own_bytes(tokens, isolated_artifacts):
    """gthread keeps the connection: the reader must leave the next request where gunicorn's parser looks."""
    first, second = tiny_onnx(seed=1), tiny_onnx(seed=2)
    ci = tokens[Role.CI]
    with gunicorn_server(**GTHREAD) as (base_url, _):
        answer = _exchange(base_url, _upload_request(base_url, ci, first) + _upload_request(base_url, ci, second)
                           + _head(base_url, None, ["Connection: close"], path="/healthz", method="GET"))
    assert _statuses(answer) == [201, 201, 200], answer[:600]
    stored = [(v.blob.digest, v.blob.size) for v in ModelVersion.objects.order_by("number")]
    assert stored == [(hashlib.sha256(b).hexdigest(), len(b)) for b in (first, second)]
    assert isolated_artifacts.staging() == []


@pytest.mark.django_db(transaction=True)
@filesystem_only
def test_keep_alive_after_a_refused_upload_does_not_run_its_body_as_a_request(tokens, isolated_artifacts):
    """A refused upload's body is drained by gunicorn, not parsed as the next request: a body that looks like
    a request must not be answered as one."""
    ci = tokens[Role.CI]
    with gunicorn_server(**GTHREAD) as (base_url, _):
        smuggled = _head(base_url, ci, [OCTETS, "Content-Length: 1"], path="/api/v1/models/", method="POST") + b"x"
        refused = _head(base_url, ci, [OCTETS, f"Content-Length: {len(smuggled)}",
                                       "X-Mlcp-Metadata: ["]) + smuggled
        answer = _exchange(base_url, refused + _head(base_url, None, ["Connection: close"], path="/healthz",
                                                     method="GET"))
    assert _statuses(answer) == [400, 200], answer[:600]
    assert _codes(answer)[0] == "invalid_metadata"
    assert isolated_artifacts.files() == []


@pytest.mark.django_db(transaction=True)
@filesystem_only
@pytest.mark.parametrize("worker_env", [{}, GTHREAD_ONE_THREAD], ids=["sync", "gthread"])
def test_failed_uploads_leave_no_staging_and_no_threads(tokens, isolated_artifacts, worker_env):
    body = tiny_onnx(seed=3) * 300  # more than one receive block
    ci = tokens[Role.CI]
    with gunicorn_server(**worker_env) as (base_url, master):
        worker = worker_pids(master.pid)[0]
        # The first upload loads what every upload needs; the thread count after it is the baseline.
        assert _statuses(_exchange(base_url, _upload_request(base_url, ci, tiny_onnx())))[0] == 201
        baseline = _threads(worker)
        short = _exchange(base_url, _head(base_url, ci, [OCTETS, f"Content-Length: {len(body) + 5}"]) + body)
        mismatch = _exchange(base_url, _upload_request(base_url, ci, body,
                                                       "X-Mlcp-Metadata: " + json.dumps({"sha256": "0" * 64})))
        not_onnx = _exchange(base_url, _upload_request(base_url, ci, b"\x00" * 5_000_000))
        ok = _exchange(base_url, _upload_request(base_url, ci, tiny_onnx(seed=4)))
        after = _threads(worker)
    assert (_statuses(short), _codes(short)) == ([400], ["upload_interrupted"]), short[:300]
    assert (_statuses(mismatch), _codes(mismatch)) == ([409], ["digest_mismatch"]), mismatch[:300]
    assert _statuses(not_onnx) == [400], not_onnx[:300]
    assert _statuses(ok) == [201], ok[:300]
    assert after == baseline
    assert isolated_artifacts.staging() == []
    assert Blob.objects.count() == 2


@pytest.mark.django_db(transaction=True)
@filesystem_only
def test_the_same_bytes_uploaded_twice_at_once_are_stored_once_and_intact(tokens, isolated_artifacts):
    body = tiny_onnx(seed=6) * 300  # several receive blocks each, so the two uploads overlap on the wire
    answers: list[bytes] = []
    with gunicorn_server(**GTHREAD) as (base_url, _):
        request = _upload_request(base_url, tokens[Role.CI], body, "Connection: close")
        senders = [threading.Thread(target=lambda: answers.append(_exchange(base_url, request))) for _ in range(2)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
    assert sorted(_statuses(a)[0] for a in answers) == [201, 201], [a[:300] for a in answers]
    digest = hashlib.sha256(body).hexdigest()
    assert sorted(ModelVersion.objects.values_list("number", flat=True)) == [1, 2]
    assert Blob.objects.get().digest == digest
    assert isolated_artifacts.read(digest) == body
    assert isolated_artifacts.staging() == []
