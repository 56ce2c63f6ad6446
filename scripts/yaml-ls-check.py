#!/usr/bin/env python3
"""What an editor shows: yaml-language-server's diagnostics for YAML files, as it finds their
schemas (the `# yaml-language-server: $schema=...` modeline `berth new service` writes).

    python3 scripts/yaml-ls-check.py SERVER FILE...

SERVER is the `yaml-language-server` command (npm install yaml-language-server). It is
started with --stdio, each FILE is opened, and every diagnostic is printed as
`file:line:column: message`. Exits 1 when any file has one. The manual check in README.md
("Editor set-up") uses it.
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

QUIET_SECONDS = 3.0  # no new diagnostics for this long: the server is done with a file
TIMEOUT_SECONDS = 60.0


def send(proc, msg):
    body = json.dumps(msg).encode()
    proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    proc.stdin.flush()


def read(proc):
    length = None
    while True:
        line = proc.stdout.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return json.loads(proc.stdout.read(length))


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    server, files = sys.argv[1], [Path(f).resolve() for f in sys.argv[2:]]
    settings = {"yaml": {"validate": True, "schemaStore": {"enable": False}, "format": {"enable": False}}}
    proc = subprocess.Popen([server, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    inbox = queue.Queue()

    def pump():
        while True:
            msg = read(proc)
            inbox.put(msg)
            if msg is None:
                return

    threading.Thread(target=pump, daemon=True).start()
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    send(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"processId": os.getpid(), "rootUri": root.as_uri(), "capabilities": {
                    "workspace": {"configuration": True},
                    "textDocument": {"publishDiagnostics": {}}}}})
    diagnostics = {f.as_uri(): None for f in files}
    opened = False
    last = time.monotonic()
    deadline = last + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            msg = inbox.get(timeout=0.2)
        except queue.Empty:
            if opened and all(d is not None for d in diagnostics.values()) and time.monotonic() - last > QUIET_SECONDS:
                break
            continue
        if msg is None:
            break
        if msg.get("id") == 1 and "result" in msg:
            send(proc, {"jsonrpc": "2.0", "method": "initialized", "params": {}})
            send(proc, {"jsonrpc": "2.0", "method": "workspace/didChangeConfiguration", "params": {"settings": settings}})
            for f in files:
                send(proc, {"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
                    "uri": f.as_uri(), "languageId": "yaml", "version": 1, "text": f.read_text()}}})
            opened = True
            last = time.monotonic()
        elif "method" in msg and "id" in msg:
            # A request of the server's: workspace/configuration and the like.
            items = msg.get("params", {}).get("items", [])
            result = [settings.get(i.get("section", ""), settings) if i.get("section") != "yaml" else settings["yaml"]
                      for i in items] if msg["method"] == "workspace/configuration" else None
            send(proc, {"jsonrpc": "2.0", "id": msg["id"], "result": result})
        elif msg.get("method") == "textDocument/publishDiagnostics":
            uri = msg["params"]["uri"]
            if uri in diagnostics:
                diagnostics[uri] = msg["params"]["diagnostics"]
                last = time.monotonic()
    proc.kill()
    found = 0
    for f in files:
        for d in diagnostics[f.as_uri()] or []:
            start = d["range"]["start"]
            print(f"{f}:{start['line'] + 1}:{start['character'] + 1}: {d['message']}")
            found += 1
        if diagnostics[f.as_uri()] is None:
            print(f"{f}: no diagnostics were published (timed out)", file=sys.stderr)
            return 2
    print(f"{len(files)} file(s), {found} diagnostic(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
