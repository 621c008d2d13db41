"""Pieces of `make bench`: a minimal Lambda runtime API server, a latency/counting proxy, the
local world (moto + emulator) and process bookkeeping. Everything listens on 127.0.0.1 only, and
every child is started in its own process group and killed (os.killpg) when the bench ends."""

import atexit
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
import uuid

# ---------------------------------------------------------------- processes

_CHILDREN = {}  # pid -> Popen
_LOCK = threading.Lock()


def spawn(cmd, env=None, cwd=None, stdout=None, stderr=None, stdin=subprocess.DEVNULL):
    """Starts `cmd` in its own session (process group); remembered until `stop`."""
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=stdout, stderr=stderr, stdin=stdin,
                            start_new_session=True)
    with _LOCK:
        _CHILDREN[proc.pid] = proc
    return proc


def stop(proc, grace=0.0):
    """Stops a child and its process group: SIGTERM (after `grace` s of waiting), then SIGKILL."""
    if proc is None:
        return
    if grace > 0:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    for sig in ((signal.SIGTERM, signal.SIGKILL) if grace > 0 else (signal.SIGKILL,)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=3)
            break
        except subprocess.TimeoutExpired:
            continue
    with _LOCK:
        _CHILDREN.pop(proc.pid, None)


def stop_all():
    with _LOCK:
        procs = list(_CHILDREN.values())
    for proc in procs:
        stop(proc)


atexit.register(stop_all)


def _on_signal(signum, _frame):
    stop_all()
    raise SystemExit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


def vm_hwm_kib(pid):
    """Peak resident set size (VmHWM) of a live process, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for pid {pid}")


# ---------------------------------------------------------------- minimal HTTP/1.1 plumbing

class _Conn:
    """Buffered reader over a socket for simple HTTP/1.1 messages."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def read_until(self, sep):
        while True:
            i = self.buf.find(sep)
            if i >= 0:
                out, self.buf = self.buf[:i], self.buf[i + len(sep):]
                return out
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_request(self):
        """(method, target, headers{lower: value}, body); handles Expect and chunked bodies."""
        head = self.read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("expect", "").lower() == "100-continue":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.read_until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    self.read_until(b"\r\n")
                    break
                body += self.read_exact(size)
                self.read_exact(2)
        else:
            body = self.read_exact(int(headers.get("content-length", "0") or 0))
        return method, target, headers, body


def _response(status, body=b"", headers=()):
    reason = {200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found",
              500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "OK")
    head = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class _Server:
    """Thread-per-connection TCP server on 127.0.0.1 with TCP_NODELAY."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(256)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        conn = _Conn(s)
        try:
            while not self.closed:
                req = conn.read_request()
                s.sendall(self.handle(conn, *req))
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------- Lambda runtime API

class Invocation:
    def __init__(self, payload):
        self.id = str(uuid.uuid4())
        self.payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.delivered_ns = None
        self.done_ns = None
        self.ok = None
        self.body = None
        self.event = threading.Event()

    def wait(self, timeout):
        if not self.event.wait(timeout):
            raise TimeoutError(f"invocation {self.id} not answered within {timeout} s")
        return self

    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


class RuntimeApi(_Server):
    """The Lambda runtime API (next / response / error / init error), one write per response;
    also answers custom-resource ResponseURL PUTs under /cfn-response/."""

    def __init__(self):
        super().__init__()
        self.pending = queue.Queue()
        self.invocations = {}
        self.init_error = None
        self.cfn_responses = []

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def submit(self, payload):
        inv = Invocation(payload)
        self.invocations[inv.id] = inv
        self.pending.put(inv)
        return inv

    def handle(self, conn, method, target, headers, body):
        now = time.monotonic_ns()
        path = target.split("?")[0]
        if method == "GET" and path == "/2018-06-01/runtime/invocation/next":
            while True:
                try:
                    inv = self.pending.get(timeout=0.5)
                    break
                except queue.Empty:
                    if self.closed:
                        raise ConnectionError("closed")
            inv.delivered_ns = time.monotonic_ns()
            deadline = int(time.time() * 1000) + 900_000
            return _response(200, inv.payload, [
                ("Content-Type", "application/json"),
                ("Lambda-Runtime-Aws-Request-Id", inv.id),
                ("Lambda-Runtime-Deadline-Ms", str(deadline)),
                ("Lambda-Runtime-Invoked-Function-Arn",
                 "arn:aws:lambda:us-east-1:123456789012:function:bench"),
                ("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000"),
            ])
        if method == "POST" and path.startswith("/2018-06-01/runtime/invocation/"):
            parts = path.split("/")
            inv = self.invocations.get(parts[4]) if len(parts) > 5 else None
            if inv is None:
                return _response(404, b'{"errorMessage":"unknown request id"}')
            inv.done_ns, inv.body, inv.ok = now, body, parts[5] == "response"
            inv.event.set()
            return _response(202, b'{"status":"OK"}', [("Content-Type", "application/json")])
        if method == "POST" and path == "/2018-06-01/runtime/init/error":
            self.init_error = body
            for inv in list(self.invocations.values()):
                if not inv.event.is_set():
                    inv.done_ns, inv.body, inv.ok = now, body, False
                    inv.event.set()
            return _response(202, b'{"status":"OK"}', [("Content-Type", "application/json")])
        if method == "PUT" and path.startswith("/cfn-response/"):
            self.cfn_responses.append(body)
            return _response(200)
        return _response(404)


# ---------------------------------------------------------------- latency / counting proxy

def operation_of(headers, body):
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    if body.startswith(b"Action=") or b"&Action=" in body:
        for pair in body.split(b"&"):
            if pair.startswith(b"Action="):
                return pair[7:].decode()
    return "?"


class Call:
    __slots__ = ("service", "op", "start", "end", "status", "throttled")


class Proxy(_Server):
    """Forwards to `upstream` (host:port) after `delay_ms`; records every call's operation,
    [start, end] interval and status."""

    def __init__(self, upstream, service, calls, lock):
        super().__init__()
        self.upstream = upstream
        self.service = service
        self.calls = calls
        self.lock = lock
        self.delay_ms = 0
        self.local = threading.local()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _upstream(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            host, port = self.upstream.rsplit(":", 1)
            c = http.client.HTTPConnection(host, int(port), timeout=120)
            self.local.conn = c
        return c

    def handle(self, conn, method, target, headers, body):
        call = Call()
        call.start = time.monotonic_ns()
        call.service, call.op = self.service, operation_of(headers, body)
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000)
        fwd = {k: v for k, v in headers.items()
               if k not in ("connection", "transfer-encoding", "expect", "content-length")}
        for attempt in range(2):
            c = self._upstream()
            try:
                c.request(method, target, body=body, headers=fwd)
                resp = c.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("content-length", "transfer-encoding", "connection")]
        call.status = resp.status
        call.throttled = resp.status in (400, 429) and (b"Throttl" in data or b"RateLimit" in data)
        payload = _response(resp.status, data, out_headers)
        call.end = time.monotonic_ns()
        with self.lock:
            self.calls.append(call)
        return payload


class Proxies:
    """One proxy per upstream, sharing one call log."""

    def __init__(self, moto_url, emulator_url):
        self.calls = []
        self.lock = threading.Lock()
        strip = lambda u: u.split("://", 1)[1].rstrip("/")
        self.moto = Proxy(strip(moto_url), "moto", self.calls, self.lock)
        self.emulator = Proxy(strip(emulator_url), "emulator", self.calls, self.lock)

    def set_delay(self, ms):
        self.moto.delay_ms = self.emulator.delay_ms = ms

    def reset(self):
        with self.lock:
            self.calls.clear()

    def snapshot(self):
        with self.lock:
            return list(self.calls)

    def env(self):
        m, e = self.moto.url, self.emulator.url
        return {
            "AWS_ENDPOINT_URL_IAM": m, "AWS_ENDPOINT_URL_STS": m,
            "AWS_ENDPOINT_URL_ORGANIZATIONS": m, "AWS_ENDPOINT_URL_SQS": m,
            "AWS_ENDPOINT_URL_DYNAMODB": m,
            "AWS_ENDPOINT_URL_LICENSE_MANAGER": e, "AWS_ENDPOINT_URL_SERVICE_CATALOG": e,
        }

    def close(self):
        self.moto.close()
        self.emulator.close()


def longest_chain(calls):
    """Longest sequence of calls each starting after the previous one ended (the sequential
    round trips of a run): dynamic programming over calls sorted by start time."""
    return len(critical_path(calls))


def critical_path(calls):
    """The calls of one longest chain (see `longest_chain`), first to last, as `service:op`."""
    items = sorted(calls, key=lambda c: (c.start, c.end))
    best, prev = [], []
    for i, c in enumerate(items):
        j_best, b = None, 1
        for j in range(i):
            if items[j].end <= c.start and best[j] + 1 > b:
                j_best, b = j, best[j] + 1
        best.append(b)
        prev.append(j_best)
    if not items:
        return []
    i = max(range(len(items)), key=lambda k: best[k])
    path = []
    while i is not None:
        path.append(f"{items[i].service}:{items[i].op}")
        i = prev[i]
    return path[::-1]


# ---------------------------------------------------------------- the local world

class World:
    """`local-world --licenses L --accounts M [--ous K]` (moto + emulator + a seeded
    organization; with K, the M members spread over K new OUs)."""

    def __init__(self, binary, licenses, accounts, log_path, ous=0):
        self.log = open(log_path, "w")
        t0 = time.monotonic()
        cmd = [binary, "--licenses", str(licenses), "--accounts", str(accounts)]
        if ous:
            cmd += ["--ous", str(ous)]
        self.proc = spawn(cmd,
                          stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.PIPE,
                          env=dict(os.environ))
        line = self.proc.stdout.readline()
        if not line:
            stop(self.proc)
            raise RuntimeError(f"local-world exited before printing its endpoints (see {log_path})")
        self.seed_seconds = time.monotonic() - t0
        self.info = json.loads(line)
        self.moto_url = self.info["motoUrl"]
        self.emulator_url = self.info["emulatorUrl"]
        self.seeded = self.info["seeded"]

    def members(self):
        return [a for a in self.seeded["accounts"] if a["name"].startswith("member-")]

    def control(self, method, path, payload=None):
        host, port = self.emulator_url.split("://", 1)[1].rstrip("/").rsplit(":", 1)
        c = http.client.HTTPConnection(host, int(port), timeout=60)
        body = json.dumps(payload).encode() if payload is not None else None
        c.request(method, path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status >= 300:
            raise RuntimeError(f"emulator {method} {path}: HTTP {r.status}: {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self):
        try:
            self.proc.stdin.close()  # local-world stops at end of stdin (and stops moto)
        except OSError:
            pass
        stop(self.proc, grace=5)
        self.log.close()
