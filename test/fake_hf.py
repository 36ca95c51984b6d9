#!/usr/bin/env python3
"""fake_hf.py — a stand-in for the Hugging Face Hub on loopback, for
test/test_get_model.sh: tools/get-model is tested against it with no
internet. Standard library only. It is not a Hub: no git, no auth beyond one
bearer token per repository, no redirects to a CDN.

    test/fake_hf.py ROOT [--port N] [--control FILE]

prints the port it listens on (N, or one the system picks), then serves
ROOT/OWNER/NAME/REVISION/FILE with Hugging Face's URL layout:

  GET|HEAD /OWNER/NAME/resolve/REVISION/FILE
      the file, with Content-Length; Range requests (206) for resuming; for
      LFS files (all but .json, .md, .txt) X-Linked-Etag: "<sha256>" and
      X-Linked-Size, as the Hub sends them
  GET /api/models/OWNER/NAME/tree/REVISION
      the listing: a JSON array of {"type": "file", "oid", "size", "path",
      "lfs": {"oid": "<sha256>", "size", "pointerSize"}}; paged with a Link
      header (rel="next", ?cursor=) when the control file sets a page size
  GET /_count/METHOD/OWNER/NAME/REVISION/FILE    requests of that method the file got
  GET /_ranges/OWNER/NAME/REVISION/FILE          the Range headers it got, one a line

Errors as the Hub spells them: 404 with X-Error-Code RepoNotFound,
RevisionNotFound or EntryNotFound; 401 and 403 with GatedRepo; 401 with
X-Error-Message "Invalid credentials in Authorization header" for the token
"invalid", on any repository.

The control file (JSON, read again on every request; every key optional):
  {"tokens":    {"OWNER/NAME": "secret"},   the repository wants "Authorization:
                                            Bearer secret": 401 without, 403 with another
   "drop_once": ["OWNER/NAME/REV/FILE"],    the first GET of the file sends half its
                                            body, then closes the connection
   "corrupt":   ["OWNER/NAME/REV/FILE"],    its body has one byte changed; the listing
                                            and X-Linked-Etag keep the true sha256
   "page_size": {"OWNER/NAME": 2}}          listings of the repository in pages
"""
import hashlib
import http.server
import json
import os
import socket
import sys
import threading
import urllib.parse

TEXT_SUFFIXES = (".json", ".md", ".txt")   # stored in git, not LFS, on the Hub


class Hub:
    def __init__(self, root, control):
        self.root, self.control_path = root, control
        self.lock = threading.Lock()
        self.counts = {}     # "METHOD OWNER/NAME/REV/FILE" -> requests
        self.ranges = {}     # "OWNER/NAME/REV/FILE" -> Range headers received
        self.dropped = set()
        self.hashes = {}     # (path, size, mtime) -> sha256

    def control(self):
        if not self.control_path or not os.path.exists(self.control_path):
            return {}
        with open(self.control_path) as f:
            return json.load(f)

    def sha256(self, path):
        stat = os.stat(path)
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self.hashes:
            with open(path, "rb") as f:
                self.hashes[key] = hashlib.sha256(f.read()).hexdigest()
        return self.hashes[key]

    def count(self, method, name, range_header):
        with self.lock:
            key = method + " " + name
            self.counts[key] = self.counts.get(key, 0) + 1
            if range_header:
                self.ranges.setdefault(name, []).append(range_header)

    def drop_now(self, name):
        """True the first time a file listed in drop_once is asked for"""
        with self.lock:
            if name in self.control().get("drop_once", []) and name not in self.dropped:
                self.dropped.add(name)
                return True
            return False


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "fake_hf/1"

    def log_message(self, *args):   # quiet: the suite prints what matters
        pass

    def do_HEAD(self):
        self.route(head=True)

    def do_GET(self):
        self.route(head=False)

    # ---- answers
    def reply(self, status, body=b"", headers=(), head=False):
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def error(self, status, code, message, head=False):
        body = json.dumps({"error": message}).encode()
        headers = [("Content-Type", "application/json"), ("X-Error-Message", message)]
        self.reply(status, body, headers + ([("X-Error-Code", code)] if code else []), head)

    # ---- routes
    def route(self, head):
        hub = self.server.hub
        url = urllib.parse.urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if parts[0] == "_count" and len(parts) >= 6:
            name = "/".join(urllib.parse.unquote(p) for p in parts[2:])
            return self.reply(200, b"%d\n" % hub.counts.get(parts[1] + " " + name, 0), head=head)
        if parts[0] == "_ranges" and len(parts) >= 5:
            name = "/".join(urllib.parse.unquote(p) for p in parts[1:])
            return self.reply(200, "".join(r + "\n" for r in hub.ranges.get(name, [])).encode(), head=head)
        if parts[:2] == ["api", "models"] and len(parts) == 6 and parts[4] == "tree":
            return self.listing(parts[2] + "/" + parts[3], urllib.parse.unquote(parts[5]), url.query, head)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self.resolve(parts[0] + "/" + parts[1], urllib.parse.unquote(parts[3]),
                                "/".join(urllib.parse.unquote(p) for p in parts[4:]), head)
        self.error(404, "EntryNotFound", "no such route", head)

    def authorized(self, repo, head):
        """the bearer token a repository wants: 401 without one, 403 with another;
        the token "invalid" is refused everywhere, as the Hub refuses a revoked one"""
        token = self.server.hub.control().get("tokens", {}).get(repo)
        given = self.headers.get("Authorization", "")
        if given == "Bearer invalid":
            self.error(401, "", "Invalid credentials in Authorization header", head)
            return False
        if token is None:
            return True
        if not given.startswith("Bearer "):
            self.error(401, "GatedRepo", f"Access to model {repo} is restricted. You must be authenticated.", head)
        elif given[len("Bearer "):] != token:
            self.error(403, "GatedRepo", f"Access to model {repo} is restricted: you have not been granted access.", head)
        else:
            return True
        return False

    def revision_dir(self, repo, revision, head):
        """ROOT/OWNER/NAME/REVISION, or a 404 naming what is missing"""
        repo_dir = os.path.join(self.server.hub.root, repo)
        if not os.path.isdir(repo_dir):
            self.error(404, "RepoNotFound", f"Repository not found: {repo}", head)
            return None
        directory = os.path.join(repo_dir, revision)
        if "/" in revision or revision.startswith(".") or not os.path.isdir(directory):
            self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head)
            return None
        return directory

    def listing(self, repo, revision, query, head):
        directory = self.revision_dir(repo, revision, head)
        if directory is None or not self.authorized(repo, head):
            return
        hub = self.server.hub
        entries = []
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isdir(path):
                entries.append({"type": "directory", "oid": "0" * 40, "size": 0, "path": name})
                continue
            size = os.path.getsize(path)
            entry = {"type": "file", "oid": hashlib.sha1(name.encode()).hexdigest(), "size": size, "path": name}
            if not name.endswith(TEXT_SUFFIXES):
                entry["lfs"] = {"oid": hub.sha256(path), "size": size, "pointerSize": 134}
            entries.append(entry)
        page_size = hub.control().get("page_size", {}).get(repo)
        headers = [("Content-Type", "application/json")]
        if page_size:
            start = int(urllib.parse.parse_qs(query).get("cursor", ["0"])[0])
            if start + page_size < len(entries):
                host = self.headers.get("Host")
                headers.append(("Link", f'<http://{host}/api/models/{repo}/tree/{urllib.parse.quote(revision, safe="")}'
                                        f'?cursor={start + page_size}>; rel="next"'))
            entries = entries[start:start + page_size]
        self.reply(200, json.dumps(entries, separators=(",", ":")).encode(), headers, head)   # compact, as the Hub sends it

    def resolve(self, repo, revision, name, head):
        directory = self.revision_dir(repo, revision, head)
        if directory is None or not self.authorized(repo, head):
            return
        path = os.path.join(directory, name)
        if "/" in name or name.startswith(".") or not os.path.isfile(path):
            return self.error(404, "EntryNotFound", f"{name} does not exist at revision {revision}", head)
        hub = self.server.hub
        key = f"{repo}/{revision}/{name}"
        range_header = self.headers.get("Range")
        hub.count("HEAD" if head else "GET", key, range_header)
        with open(path, "rb") as f:
            body = f.read()
        size = len(body)
        headers = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes"), ("ETag", f'"{key}"')]
        if not name.endswith(TEXT_SUFFIXES):
            headers += [("X-Linked-Etag", f'"{hub.sha256(path)}"'), ("X-Linked-Size", str(size))]
        if key in hub.control().get("corrupt", []) and size:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        status, start, end = 200, 0, size - 1
        if range_header:
            start, end = parse_range(range_header, size)
            if start is None:
                return self.reply(416, b"", headers + [("Content-Range", f"bytes */{size}")], head)
            status = 206
            headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        body = body[start:end + 1]
        if head:
            return self.reply(status, body, headers, head=True)
        if hub.drop_now(key):
            # the promised length, half of it sent, then the connection closed
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.reply(status, body, headers)


def parse_range(header, size):
    """'bytes=A-B' or 'bytes=A-' -> (start, end), (None, None) if unsatisfiable"""
    try:
        unit, spec = header.split("=", 1)
        first, last = spec.split(",")[0].split("-", 1)
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None, None
    if unit.strip() != "bytes" or start >= size or end < start:
        return None, None
    return start, end


def main(argv):
    args = {"--port": "0", "--control": None}
    positional = []
    i = 0
    while i < len(argv):
        if argv[i] in args and i + 1 < len(argv):
            args[argv[i]] = argv[i + 1]
            i += 2
        else:
            positional.append(argv[i])
            i += 1
    if len(positional) != 1 or not os.path.isdir(positional[0]):
        sys.exit("usage: fake_hf.py ROOT [--port N] [--control FILE]")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(args["--port"])), Handler)
    server.daemon_threads = True
    server.hub = Hub(positional[0], args["--control"])
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(sys.argv[1:])
