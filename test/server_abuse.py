#!/usr/bin/env python3
"""server_abuse.py - the ways a client can starve or bloat ./server, each a
bounded test on loopback (test/test_server.sh). Standard library only.
Prints one line per check, "ok: ..." or "FAIL: ...", and exits 1 on a failure.
It is not a load test: each case is a few dozen sockets for a few seconds.

    server_abuse.py PORT starve SECONDS      64 slow sockets from 127.0.0.1 (partial headers, reconnecting when
                                             dropped) while /health from 127.0.0.2 and a completion from
                                             127.0.0.3 are asked for again and again: every one must succeed
    server_abuse.py PORT half-close          a client that shuts its sending side after the request still gets
                                             its answer, streamed and not
    server_abuse.py PORT abandon PROMPT_WORDS three clients send a long prompt and give up at once; a fourth,
                                             short request must then be served within a second or so
    server_abuse.py PORT memory PID          1 MB bodies holding a large field nobody reads, 8 at a time: the
                                             peak and the idle resident memory stay small
"""
import json
import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
failed = 0


def check(name, good, detail=""):
    global failed
    print(("ok: " if good else "FAIL: ") + name + ("" if good else " " + str(detail)[:400]), flush=True)
    if not good:
        failed += 1


def connect(source="127.0.0.1", timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", PORT))
    return s


def request_bytes(method, path, body=None):
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
    if body is not None:
        data = body.encode() if isinstance(body, str) else body
        return (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data
    return (head + "\r\n").encode()


def read_all(s, deadline):
    chunks = []
    while time.time() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def exchange(method, path, body=None, source="127.0.0.1", timeout=5.0):
    """The status and body of one request, or (0, why)."""
    try:
        s = connect(source, timeout)
        s.sendall(request_bytes(method, path, body))
        raw = read_all(s, time.time() + timeout)
        s.close()
    except OSError as error:
        return 0, str(error)
    head, _, payload = raw.partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ")[1]), payload
    except (IndexError, ValueError):
        return 0, raw[:200]


def starve(seconds):
    stop = time.time() + seconds
    sockets = []
    dropped = [0]

    def attacker(index):
        s = None
        while time.time() < stop:
            try:
                if s is None:
                    s = connect("127.0.0.1", 1.0)
                    s.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
                s.sendall(b"a")   # a byte now and then: the head never ends
                time.sleep(0.25)
            except OSError:
                dropped[0] += 1
                try:
                    s.close()
                except (OSError, AttributeError):
                    pass
                s = None
                time.sleep(0.05)
        if s:
            s.close()

    threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(64)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    health_ok = health_total = completion_ok = completion_total = 0
    worst = 0.0
    while time.time() < stop - 0.5:
        started = time.time()
        status, _ = exchange("GET", "/health", source="127.0.0.2", timeout=3.0)
        worst = max(worst, time.time() - started)
        health_total += 1
        health_ok += status == 200
        if health_total % 3 == 0:
            status, body = exchange("POST", "/completion", json.dumps({"prompt": "Once", "n_predict": 4}), source="127.0.0.3", timeout=5.0)
            completion_total += 1
            completion_ok += status == 200
        time.sleep(0.2)
    for t in threads:
        t.join()
    check(f"64 slow sockets from one address: /health from another answered {health_ok} of {health_total} times "
          f"(slowest {worst * 1000:.0f} ms)", health_ok == health_total and health_total >= 5)
    check(f"... and a completion from a third address {completion_ok} of {completion_total} times",
          completion_ok == completion_total and completion_total >= 2)
    check("the slow sockets were cut off (per-address limit, head deadline)", dropped[0] > 0, f"{dropped[0]} drops")


def half_close():
    for stream in (False, True):
        body = json.dumps({"prompt": "Once upon a time", "n_predict": 16, "stream": stream})
        s = connect()
        s.sendall(request_bytes("POST", "/completion", body))
        s.shutdown(socket.SHUT_WR)   # as `nc -N` does: no more to send, still reading
        raw = read_all(s, time.time() + 10)
        s.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        good = head.startswith(b"HTTP/1.1 200")
        if good and not stream:
            try:
                good = json.loads(payload)["stop"] is True
            except (ValueError, KeyError):
                good = False
        if good and stream:
            events = [e for e in payload.decode("utf-8", "strict").split("\n\n") if e.startswith("data: ")]
            good = len(events) >= 2 and json.loads(events[-1][6:])["stop"] is True
        check(f"a half-closed client gets its {'streamed ' if stream else ''}answer", good, raw[:300])


def abandon(words):
    prompt = " ".join(["story"] * words)
    body = json.dumps({"prompt": prompt, "n_predict": 8})
    for _ in range(3):   # each gives up after 0.3 s: its job must stop at the next chunk
        s = connect()
        s.sendall(request_bytes("POST", "/completion", body))
        time.sleep(0.3)
        s.close()
    started = time.time()
    status, payload = exchange("POST", "/completion", json.dumps({"prompt": "Once", "n_predict": 2}), source="127.0.0.2", timeout=20)
    took = time.time() - started
    check(f"after three abandoned long prompts the next request is served in {took:.2f} s", status == 200 and took < 3.0, payload)


def rss_kb(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def memory(pid):
    junk = "[" + ",".join(["0"] * 480000) + "]"   # about 1 MB of an array nobody reads
    body = '{"prompt":"Once","n_predict":2,"ignored":' + junk + "}"
    assert len(body) < 1 << 20
    exchange("POST", "/completion", json.dumps({"prompt": "Once", "n_predict": 2}))
    base = rss_kb(pid, "VmRSS")
    peak_before = rss_kb(pid, "VmHWM")
    statuses = []

    def one():
        statuses.append(exchange("POST", "/completion", body, timeout=20)[0])

    # 4 waves of 6, not 3 of 8: a connection counts against the address's 8
    # until its server thread closes it, a moment after the client has read
    # its answer; with parallel slots the answers of a wave come together,
    # and a wave of 8 sent at once would meet a few of the last still closing
    for _ in range(4):
        threads = [threading.Thread(target=one) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    time.sleep(0.5)
    peak = rss_kb(pid, "VmHWM")
    idle = rss_kb(pid, "VmRSS")
    check(f"24 one-megabyte bodies with an ignored array: all answered", statuses.count(200) == 24, statuses)
    grown = max(peak - peak_before, 0)
    check(f"... peak memory grew by {grown} kB (bodies are read, their ignored field never built)", grown < 48 * 1024, grown)
    check(f"... and idle memory is back to {idle} kB from {base} kB", idle < base + 12 * 1024, (base, idle))
    print(f"memory: rss_base_kB={base} peak_growth_kB={grown} rss_idle_after_kB={idle}")


what = sys.argv[2]
if what == "starve":
    starve(float(sys.argv[3]))
elif what == "half-close":
    half_close()
elif what == "abandon":
    abandon(int(sys.argv[3]))
elif what == "memory":
    memory(int(sys.argv[3]))
sys.exit(1 if failed else 0)
