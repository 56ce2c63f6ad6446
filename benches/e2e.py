#!/usr/bin/env python3
"""End-to-end benchmarks of `berth daemon` against moto on loopback (issue 5).

    source scripts/setup.sh
    cargo build --release --locked --bin berth
    $VENV/bin/python benches/e2e.py [--quick] [--json out.json]

Everything runs on 127.0.0.1: per "world", a moto server, a counting reverse proxy in
front of it (berth's `aws.endpoint_url`), a git smart-HTTP server (`git http-backend`
behind a small Python HTTP server, which counts ref advertisements and fetches) serving a
bare origin, and a generated monorepo of N services (a quarter with autoscaling, each with
one secret referencing its own SSM parameter) with an ECR image pushed for every service.

Scenarios (figures are printed as tables and written as JSON with --json):
  1. steady-state poll cost: AWS requests per poll by operation vs the minimum
     ceil(N/10) DescribeServices + ceil(N/50) DescribeScalableTargets + ceil(P/50)
     DescribeScalingPolicies, and git requests per poll (target: one ref advertisement);
  2. converge time of a commit changing K of N services: berth daemon (push + webhook)
     vs one `ecs deploy ... --timeout -1` (PyPI ecs-deploy, in a throwaway venv) per
     changed service, in sequence, against the same moto;
  3. change latency, git push -> first UpdateService: with the webhook, and polling at
     the default interval (60 s);
  4. footprint: idle RSS and CPU over minutes of polling, RSS per N, peak RSS of a
     100-service converge.

Internal modes (run by the script itself as child processes): `_proxy`, `_githttp`.
Only the Python standard library and boto3 (from berth's venv) are used.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import hashlib
import hmac
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REGION = "us-east-1"
ACCOUNT = "123456789012"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
CLUSTER = "pre"
WEBHOOK_SECRET = "bench-webhook-secret"
ECS_DEPLOY_PIN = "ecs-deploy==1.17.0"
ROOT = Path(__file__).resolve().parent.parent

READ_PREFIXES = ("Describe", "List", "Get", "BatchGet")
HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
       "content-length", "server", "date"}


# --------------------------------------------------------------------------------------
# Small HTTP helpers shared by the child servers
# --------------------------------------------------------------------------------------

def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()
    n = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(n) if n else b""


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers=(), ctype="application/json"):
    handler.send_response_only(status)
    sent_type = False
    for k, v in headers:
        if k.lower() == "content-type":
            sent_type = True
        handler.send_header(k, v)
    if not sent_type:
        handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def serve_forever(server: ThreadingHTTPServer):
    print(f"ready {server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    server.serve_forever(poll_interval=0.2)


# --------------------------------------------------------------------------------------
# Child 1: the counting reverse proxy in front of moto
# --------------------------------------------------------------------------------------

def run_proxy(upstream_port: int):
    lock = threading.Lock()
    # chaos: faults on a share of all requests (benches/faults.py): percent, kind, rng
    state = {"counts": {}, "ds_sizes": [], "events": [], "total": 0, "chaos": None}
    local = threading.local()

    def upstream() -> http.client.HTTPConnection:
        c = getattr(local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            local.conn = c
        return c

    def operation(h: BaseHTTPRequestHandler, body: bytes) -> str:
        if "/operation/" in h.path:
            return h.path.rsplit("/operation/", 1)[1]
        t = h.headers.get("X-Amz-Target")
        if t:
            return t.rsplit(".", 1)[-1]
        m = re.search(rb"(?:^|&)Action=([A-Za-z]+)", body)
        return m.group(1).decode() if m else "unknown"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def bench(self):
            if self.path.startswith("/_bench/counts"):
                with lock:
                    body = json.dumps({"counts": state["counts"], "ds_sizes": state["ds_sizes"], "total": state["total"]})
                return reply(self, 200, body.encode())
            if self.path.startswith("/_bench/chaos"):
                q = dict(kv.split("=", 1) for kv in self.path.split("?", 1)[1].split("&")) if "?" in self.path else {}
                pct = int(q.get("percent", "0"))
                with lock:
                    state["chaos"] = (pct, q.get("fault", "5xx"), random.Random(int(q.get("seed", "1")))) if pct else None
                return reply(self, 200, b"{}")
            if self.path.startswith("/_bench/events"):
                since = float(self.path.split("since=", 1)[1]) if "since=" in self.path else 0.0
                with lock:
                    ev = [e for e in state["events"] if e[0] >= since]
                return reply(self, 200, json.dumps(ev).encode())
            return reply(self, 404, b"{}")

        def handle_any(self):
            if self.path.startswith("/_bench/"):
                read_body(self)
                return self.bench()
            t_recv = time.time()
            body = read_body(self)
            op = operation(self, body)
            target = ""
            if op in ("UpdateService", "CreateService", "RegisterTaskDefinition", "DescribeServices"):
                try:
                    j = json.loads(body or b"{}")
                    target = j.get("service") or j.get("serviceName") or j.get("family") or ""
                    if op == "DescribeServices":
                        with lock:
                            state["ds_sizes"].append(len(j.get("services", [])))
                except ValueError:
                    pass
            with lock:
                state["counts"][op] = state["counts"].get(op, 0) + 1
                state["total"] += 1
                chaos = state["chaos"]
                fault = chaos[1] if chaos and chaos[2].random() * 100 < chaos[0] else None
                if fault == "mix":  # issue 12's probe: 500, 503, throttling, drops or 10 s delays
                    fault = chaos[2].choice(["5xx", "5xx", "throttle", "drop", "delay"])
            if fault == "5xx":
                return reply(self, 503, b'{"__type":"ServiceUnavailableException","message":"injected"}')
            if fault == "throttle":
                return reply(self, 400, b'{"__type":"ThrottlingException","message":"Rate exceeded"}')
            if fault == "drop":
                self.close_connection = True
                return
            if fault == "delay":
                time.sleep(10)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            resp_body, status, resp_headers = b"", 502, []
            for attempt in range(2):
                try:
                    c = upstream()
                    c.request(self.command, self.path, body=body, headers=headers)
                    r = c.getresponse()
                    resp_body = r.read()
                    status = r.status
                    resp_headers = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
                    if r.getheader("Connection", "").lower() == "close":
                        c.close()
                        local.conn = None
                    break
                except (OSError, http.client.HTTPException):
                    try:
                        upstream().close()
                    except Exception:
                        pass
                    local.conn = None
                    if attempt == 1:
                        resp_body, status, resp_headers = b'{"__type":"ProxyError"}', 502, []
            if fault == "lose":
                # Carried out by moto; the answer never reaches berth.
                self.close_connection = True
                return
            reply(self, status, resp_body, resp_headers)
            with lock:
                state["events"].append([t_recv, time.time(), op, target])

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

    serve_forever(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


# --------------------------------------------------------------------------------------
# Child 2: git smart HTTP (git http-backend as CGI), counting requests
# --------------------------------------------------------------------------------------

def run_githttp(root: str):
    lock = threading.Lock()
    counts: dict[str, int] = {}
    events: list = []
    sent = {"bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def handle_any(self):
            body = read_body(self)
            path, _, query = self.path.partition("?")
            if path.startswith("/_bench/counts"):
                with lock:
                    return reply(self, 200, json.dumps({"counts": counts, "bytes": sent["bytes"]}).encode())
            if path.startswith("/_bench/events"):
                since = float(query.split("since=", 1)[1]) if "since=" in query else 0.0
                with lock:
                    return reply(self, 200, json.dumps([e for e in events if e[0] >= since]).encode())
            t_recv = time.time()
            key = f"{self.command} {path.rsplit('/', 2)[-2] + '/' if path.endswith('/refs') else ''}{path.rsplit('/', 1)[-1]}"
            if query:
                key += "?" + query
            with lock:
                counts[key] = counts.get(key, 0) + 1
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "GIT_PROJECT_ROOT": root,
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_ADDR": "127.0.0.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "HOME": root,
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            p = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=120)
            out = p.stdout
            sep = out.find(b"\r\n\r\n")
            skip = 4
            if sep < 0 or (out.find(b"\n\n") >= 0 and out.find(b"\n\n") < sep):
                sep, skip = out.find(b"\n\n"), 2
            head, payload = (out[:sep], out[sep + skip:]) if sep >= 0 else (b"", out)
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                if ":" not in line:
                    continue
                k, v = line.split(":", 1)
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                elif k.lower() not in HOP:
                    headers.append((k, v.strip()))
            reply(self, status, payload, headers, ctype="text/plain")
            with lock:
                sent["bytes"] += len(payload)
                events.append([t_recv, time.time(), key])

        do_GET = do_POST = handle_any

    serve_forever(ThreadingHTTPServer(("127.0.0.1", 0), Handler))


# --------------------------------------------------------------------------------------
# Process bookkeeping: every child is killed by its own PID when the script ends
# --------------------------------------------------------------------------------------

CHILDREN: list[subprocess.Popen] = []


def spawn(cmd, log: Path, env=None, ready_line=False) -> tuple[subprocess.Popen, int | None]:
    f = open(log, "wb")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE if ready_line else f, stderr=f, stdin=subprocess.DEVNULL, env=env)
    CHILDREN.append(p)
    port = None
    if ready_line:
        line = p.stdout.readline().decode()
        if not line.startswith("ready "):
            raise RuntimeError(f"{cmd[2:3]} did not start: {line!r} (log {log})")
        port = int(line.split()[1])
    return p, port


def stop(p: subprocess.Popen | None, sig=signal.SIGTERM, wait=40.0) -> int | None:
    if p is None or p.poll() is not None:
        return None if p is None else p.returncode
    try:
        p.send_signal(sig)
        return p.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait(timeout=10)


def kill_all():
    for p in reversed(CHILDREN):
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:
                pass


atexit.register(kill_all)


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url: str, timeout=10.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return 0, ""


def wait_until(what: str, limit: float, cond, every=0.1):
    deadline = time.time() + limit
    while time.time() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError(f"timed out after {limit:.0f} s waiting for {what}")


def proc_stats(pid: int) -> dict:
    status = Path(f"/proc/{pid}/status").read_text()
    kb = lambda k: int(re.search(rf"^{k}:\s+(\d+) kB", status, re.M).group(1))
    stat = Path(f"/proc/{pid}/stat").read_text()
    rest = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {"rss_kib": kb("VmRSS"), "hwm_kib": kb("VmHWM"), "anon_kib": kb("RssAnon"), "file_kib": kb("RssFile"),
            "threads": int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1)),
            "cpu_s": (int(rest[11]) + int(rest[12])) / ticks, "t": time.time()}


def anon_by_mapping(pid: int) -> dict:
    """Where the process's anonymous resident memory sits, in KiB: the main heap (brk),
    glibc's other malloc arenas (each starts on a 64 MiB boundary), thread stacks, and
    other anonymous mappings (large allocations, thread stacks without a name)."""
    out = {"heap": 0, "arenas": 0, "arena_count": 0, "stack": 0, "other_anon": 0, "file_private": 0}
    name, lo = "", 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            lo = int(head[0].split("-")[0], 16)
            name = head[5] if len(head) > 5 else ""
        elif head[0] == "Anonymous:" and int(head[1]):
            kib = int(head[1])
            if name == "[heap]":
                out["heap"] += kib
            elif name.startswith("[stack"):
                out["stack"] += kib
            elif name.startswith("/"):
                out["file_private"] += kib
            elif lo % (64 << 20) == 0:
                out["arenas"] += kib
                out["arena_count"] += 1
            else:
                out["other_anon"] += kib
    return out


def file_by_mapping(pid: int) -> dict:
    """Resident file-backed pages per file, in KiB (berth's own code, libcrypto, libc, …),
    largest first."""
    out: dict[str, int] = {}
    name = ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = os.path.basename(head[5]) if len(head) > 5 and head[5].startswith("/") else ""
        elif head[0] == "Rss:" and name:
            out[name] = out.get(name, 0) + int(head[1])
        elif head[0] == "Anonymous:" and name:
            out[name] -= int(head[1])  # private pages written to (relocations) are anon
    return dict(sorted(((k, v) for k, v in out.items() if v), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------------------
# A world: moto + proxy + git HTTP server + generated monorepo + seeded AWS
# --------------------------------------------------------------------------------------

def aws_env(endpoint: str | None, work: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(work / "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials")})
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return env


def git(repo: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="bench", GIT_AUTHOR_EMAIL="bench@berth.invalid",
               GIT_COMMITTER_NAME="bench", GIT_COMMITTER_EMAIL="bench@berth.invalid")
    p = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"git {args}: {p.stderr}")
    return p.stdout.strip()


def service_yaml(i: int, rev: int) -> str:
    scaling = "  autoscaling: {resource: cpu, target: 70, min: 1, max: 3}\n" if i % 4 == 0 else "  count: 1\n"
    return (f"type: service\nname: svc{i:04d}\nspec:\n  image: svc{i:04d}\n  resources: {{cpu: 256, memory: 512}}\n"
            f"{scaling}  environment:\n    - key: REVISION\n      value: 'r{rev}'\n"
            "    - key: DB_PASSWORD\n      value: '{{ .Variables[\"db\"] }}'\n")


class World:
    def __init__(self, n: int, base: Path, moto_bin: str, berth: str, prefix: list[str] | None = None):
        self.n, self.berth, self.prefix = n, berth, prefix or []
        self.dir = base / f"world-{n}"
        self.dir.mkdir(parents=True)
        self.rev = {i: 1 for i in range(n)}
        self.repositories: set[str] = set()
        self.daemon: subprocess.Popen | None = None
        t0 = time.time()
        port = free_port()
        self.moto, _ = spawn([moto_bin, "-H", "127.0.0.1", "-p", str(port)], self.dir / "moto.log")
        self.moto_url = f"http://127.0.0.1:{port}"
        wait_until("moto", 30, lambda: http_get(self.moto_url + "/moto-api/", 2)[0] == 200)
        self.proxy, pport = spawn([sys.executable, __file__, "_proxy", "--upstream", str(port)], self.dir / "proxy.log", ready_line=True)
        self.proxy_url = f"http://127.0.0.1:{pport}"
        self.gitroot = self.dir / "git"
        self.gitroot.mkdir()
        self.githttp, gport = spawn([sys.executable, __file__, "_githttp", "--root", str(self.gitroot)], self.dir / "githttp.log", ready_line=True)
        self.git_url = f"http://127.0.0.1:{gport}"
        import boto3
        from botocore.config import Config as BotoConfig
        os.environ.update({k: v for k, v in aws_env(None, self.dir).items() if k.startswith("AWS_")})
        cfg = BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=16)
        self.client = lambda svc, url=None: boto3.client(svc, region_name=REGION, endpoint_url=url or self.moto_url, config=cfg)
        self.ecs, self.ecr = self.client("ecs"), self.client("ecr")
        ec2 = self.client("ec2")
        self.subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
        self.sg = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
        self.ecs.create_cluster(clusterName=CLUSTER)
        self._make_repo()
        self._seed()
        self.setup_s = time.time() - t0

    @property
    def names(self) -> list[str]:
        return [f"svc{i:04d}" for i in range(self.n)]

    @property
    def policies(self) -> int:
        return sum(1 for i in range(self.n) if i % 4 == 0)

    def _write_service(self, i: int):
        d = self.repo / f"services/svc{i:04d}/deploy"
        (d / "pre").mkdir(parents=True, exist_ok=True)
        (d / "service.yaml").write_text(service_yaml(i, self.rev[i]))
        (d / "pre/config.yaml").write_text(f"secrets:\n  - key: db\n    value: ssm:/pre/svc{i:04d}/db-password\n")

    def _make_repo(self):
        self.repo = self.dir / "monorepo"
        self.repo.mkdir()
        (self.repo / "README.md").write_text(f"generated monorepo of {self.n} services\n")
        for i in range(self.n):
            self._write_service(i)
        git(self.repo, "init", "-q", "-b", "develop")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", f"{self.n} services")
        self.origin = self.gitroot / "origin.git"
        git(self.dir, "clone", "-q", "--bare", str(self.repo), str(self.origin))
        git(self.repo, "remote", "add", "origin", str(self.origin))

    def tag_of(self, i: int) -> str:
        return git(self.repo, "log", "-1", "--first-parent", "--format=%H", "--", f"services/svc{i:04d}")[:12]

    def push_images(self, items: list[tuple[str, str]]):
        """put_image for each (repository, tag), creating repositories as needed (as world.rs)."""
        # moto answers put_image into a missing repository with HTTP 500: create first.
        missing = sorted({repo for repo, _ in items} - self.repositories)
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda r: self.ecr.create_repository(repositoryName=r), missing))
        self.repositories.update(missing)

        def one(item):
            repo, tag = item
            manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                                   "config": {"digest": "sha256:" + hashlib.sha256(f"{repo}:{tag}".encode()).hexdigest()}, "layers": []})
            try:
                self.ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
            except self.ecr.exceptions.ImageAlreadyExistsException:
                pass
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, items))

    def _seed(self):
        ssm = self.client("ssm")
        def param(i):
            ssm.put_parameter(Name=f"/pre/svc{i:04d}/db-password", Value=f"bench-secret-{i}", Type="SecureString")
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(param, range(self.n)))
        if self.n:
            tag = git(self.repo, "rev-parse", "HEAD")[:12]
            self.push_images([(name, tag) for name in self.names])

    # -- changes -------------------------------------------------------------------------
    def commit_change(self, idx: list[int], msg: str) -> str:
        """Bumps REVISION of the services `idx`, commits, pushes their images (what CI does
        before berth can deploy); returns the new image tag. Does not push git."""
        for i in idx:
            self.rev[i] += 1
            self._write_service(i)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", msg)
        tag = git(self.repo, "rev-parse", "HEAD")[:12]
        self.push_images([(f"svc{i:04d}", tag) for i in idx])
        return tag

    def git_push(self) -> float:
        t = time.time()
        git(self.repo, "push", "-q", "origin", "develop")
        return time.time() - t

    # -- counters ------------------------------------------------------------------------
    def proxy_counts(self) -> dict:
        return json.loads(http_get(self.proxy_url + "/_bench/counts")[1])

    def proxy_events(self, since: float) -> list:
        return json.loads(http_get(f"{self.proxy_url}/_bench/events?since={since}")[1])

    def git_events(self, since: float) -> list:
        return json.loads(http_get(f"{self.git_url}/_bench/events?since={since}")[1])

    def git_counts(self) -> dict:
        return json.loads(http_get(self.git_url + "/_bench/counts")[1])

    def task_definitions(self, names: list[str]) -> dict[str, str]:
        out = {}
        for j in range(0, len(names), 10):
            for s in self.ecs.describe_services(cluster=CLUSTER, services=names[j:j + 10])["services"]:
                out[s["serviceName"]] = s["taskDefinition"]
        return out

    # -- the daemon ----------------------------------------------------------------------
    def write_config(self, poll: str | None) -> Path:
        self.mport, self.hport = free_port(), free_port()
        poll_line = f"  poll_interval: {poll}\n" if poll else ""
        text = (
            "repo:\n"
            f"  url: {self.git_url}/origin.git\n"
            f"  workdir: {self.dir / 'state'}\n"
            f"{poll_line}"
            "aws:\n"
            f"  region: {REGION}\n"
            f"  endpoint_url: {self.proxy_url}\n"
            f"  account_id: \"{ACCOUNT}\"\n"
            f"  registry: {REGISTRY}\n"
            "  max_attempts: 4\n"
            "environments:\n"
            f"  {CLUSTER}:\n"
            "    source: {branch: develop}\n"
            f"    cluster: {CLUSTER}\n"
            "    rollout: {wait: false}\n"
            "    defaults:\n"
            f"      execution_role: arn:aws:iam::{ACCOUNT}:role/ecs-execution-{{env}}\n"
            f"      task_role: arn:aws:iam::{ACCOUNT}:role/{{service}}-{{env}}\n"
            f"      subnets: [{', '.join(self.subnets)}]\n"
            f"      security_groups: [{self.sg}]\n"
            f"metrics: {{listen: 127.0.0.1:{self.mport}}}\n"
            f"webhook: {{listen: 127.0.0.1:{self.hport}, secret_env: BERTH_BENCH_WEBHOOK}}\n"
        )
        path = self.dir / "berth.yaml"
        path.write_text(text)
        return path

    def start_daemon(self, poll: str | None, ready_limit=900.0) -> dict:
        """Starts `berth daemon`; returns the time to /readyz and the requests it took."""
        assert self.daemon is None
        cfg = self.write_config(poll)
        before, gbefore = self.proxy_counts(), self.git_counts()
        env = aws_env(None, self.dir)
        env.update({"RUST_LOG": os.environ.get("BERTH_BENCH_RUST_LOG", "info"), "BERTH_BENCH_WEBHOOK": WEBHOOK_SECRET})
        t0 = time.time()
        self.daemon, _ = spawn([*self.prefix, self.berth, "daemon", "--config", str(cfg)], self.dir / f"daemon-{self.mport}.log", env=env)
        self.murl = f"http://127.0.0.1:{self.mport}"
        def ready():
            if self.daemon.poll() is not None:
                raise RuntimeError(f"berth daemon exited with {self.daemon.returncode}; see {self.dir}")
            return http_get(self.murl + "/readyz", 2)[0] == 200
        wait_until("berth /readyz", ready_limit, ready, every=0.05)
        took = time.time() - t0
        after, gafter = self.proxy_counts(), self.git_counts()
        return {"ready_s": took, "aws": diff_counts(before["counts"], after["counts"]),
                "git": diff_counts(gbefore["counts"], gafter["counts"]), "proc": proc_stats(self.daemon.pid)}

    def stop_daemon(self) -> int | None:
        code = stop(self.daemon)
        self.daemon = None
        return code

    def metrics(self) -> dict:
        _, text = http_get(self.murl + "/metrics")
        out = {}
        for name, sel in (("berth_reconcile_duration_seconds_count", f'{{env="{CLUSTER}"}}'),
                          ("berth_reconcile_duration_seconds_sum", f'{{env="{CLUSTER}"}}'),
                          # One poll of the repository serves every environment: no env label.
                          ("berth_git_fetch_duration_seconds_sum", "")):
            m = re.search(rf'^{name}{re.escape(sel)} (\S+)$', text, re.M)
            out[name.replace("berth_", "").replace("_seconds", "")] = float(m.group(1)) if m else 0.0
        return out

    def cycles(self) -> int:
        return int(self.metrics()["reconcile_duration_count"])

    def wait_cycle(self, after: int, limit: float) -> int:
        # /metrics costs the daemon CPU in proportion to N: ask four times a second only.
        return wait_until(f"cycle {after + 1}", limit, lambda: (lambda c: c if c > after else 0)(self.cycles()), every=0.25)

    def webhook(self, delivery: str | None = None) -> int:
        body = json.dumps({"ref": "refs/heads/develop", "after": git(self.repo, "rev-parse", "HEAD")}).encode()
        sig = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sig, "Content-Type": "application/json"}
        if delivery:
            headers["X-GitHub-Delivery"] = delivery
        req = urllib.request.Request(f"http://127.0.0.1:{self.hport}/webhook/github", data=body, method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status

    def close(self):
        self.stop_daemon()
        for p in (self.githttp, self.proxy, self.moto):
            stop(p, wait=10)


def diff_counts(a: dict, b: dict) -> dict:
    return {k: b[k] - a.get(k, 0) for k in sorted(b) if b[k] - a.get(k, 0)}


def snapshot(w: World) -> dict:
    p, g = w.proxy_counts(), w.git_counts()
    return {"aws": p["counts"], "ds_len": len(p["ds_sizes"]), "ds_sizes": p["ds_sizes"], "git": g["counts"],
            "git_bytes": g["bytes"], "metrics": w.metrics(), "berth": proc_stats(w.daemon.pid), "moto": proc_stats(w.moto.pid)}


# --------------------------------------------------------------------------------------
# moto's own cost: a raw describe_services loop
# --------------------------------------------------------------------------------------

def moto_raw(w: World, calls: int) -> dict:
    names = w.names
    batches = [names[j:j + 10] for j in range(0, len(names), 10)] or [["none"]]
    out = {}
    # Raw HTTP, keep-alive, straight to moto: the server's own time per call.
    host, port = "127.0.0.1", int(w.moto_url.rsplit(":", 1)[1])
    c = http.client.HTTPConnection(host, port, timeout=60)
    hdr = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.DescribeServices",
           "Authorization": f"AWS4-HMAC-SHA256 Credential=test/20260101/{REGION}/ecs/aws4_request, SignedHeaders=host, Signature=0"}
    times = []
    for k in range(calls):
        body = json.dumps({"cluster": CLUSTER, "services": batches[k % len(batches)], "include": ["TAGS"]})
        t = time.perf_counter()
        c.request("POST", "/", body=body, headers=hdr)
        r = c.getresponse()
        r.read()
        times.append(time.perf_counter() - t)
        if r.getheader("Connection", "").lower() == "close":
            c.close()
    c.close()
    out["raw_http_moto"] = summarize_ms(times)
    for label, url in (("boto3_moto", w.moto_url), ("boto3_via_proxy", w.proxy_url)):
        ecs = w.client("ecs", url)
        times = []
        for k in range(calls):
            t = time.perf_counter()
            ecs.describe_services(cluster=CLUSTER, services=batches[k % len(batches)], include=["TAGS"])
            times.append(time.perf_counter() - t)
        out[label] = summarize_ms(times)
    aas = w.client("application-autoscaling", w.moto_url)
    ids = [f"service/{CLUSTER}/{n}" for i, n in enumerate(names) if i % 4 == 0][:50] or ["service/pre/none"]
    times = []
    for _ in range(max(10, calls // 5)):
        t = time.perf_counter()
        aas.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=ids)
        times.append(time.perf_counter() - t)
    out["boto3_describe_scalable_targets_moto"] = summarize_ms(times)
    out["calls"] = calls
    return out


def summarize_ms(times: list[float]) -> dict:
    s = sorted(times)
    return {"mean_ms": 1000 * statistics.mean(s), "p50_ms": 1000 * s[len(s) // 2], "p95_ms": 1000 * s[int(len(s) * 0.95) - 1 if len(s) > 1 else 0]}


# --------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------

def minimum(n: int, p: int) -> dict:
    m = {}
    if n:
        m["DescribeServices"] = math.ceil(n / 10)
        m["DescribeScalableTargets"] = math.ceil(n / 50)
    if p:
        m["DescribeScalingPolicies"] = math.ceil(p / 50)
    return m


def steady_polls(w: World, polls: int, interval: float, log) -> dict:
    """Scenario 1 on a running daemon: snapshots at each cycle end, deltas per poll."""
    c = w.wait_cycle(w.cycles(), interval * 3 + 120)  # settle: one full cycle after ready
    prev = snapshot(w)
    rows = []
    for k in range(polls):
        c = w.wait_cycle(c, interval * 3 + 120)
        cur = snapshot(w)
        aws = diff_counts(prev["aws"], cur["aws"])
        gitc = diff_counts(prev["git"], cur["git"])
        rows.append({
            "aws": aws, "aws_total": sum(aws.values()), "writes": {k2: v for k2, v in aws.items() if not k2.startswith(READ_PREFIXES)},
            "describe_services_sizes": cur["ds_sizes"][prev["ds_len"]:],
            "git": gitc, "git_bytes": cur["git_bytes"] - prev["git_bytes"],
            "reconcile_s": cur["metrics"]["reconcile_duration_sum"] - prev["metrics"]["reconcile_duration_sum"],
            "git_poll_s": cur["metrics"]["git_fetch_duration_sum"] - prev["metrics"]["git_fetch_duration_sum"],
            "berth_cpu_s": cur["berth"]["cpu_s"] - prev["berth"]["cpu_s"], "moto_cpu_s": cur["moto"]["cpu_s"] - prev["moto"]["cpu_s"],
            "berth_rss_kib": cur["berth"]["rss_kib"],
        })
        log(f"  N={w.n} poll {k + 1}: {rows[-1]['aws_total']} AWS requests {rows[-1]['aws']}, git {gitc}, "
            f"reconcile {rows[-1]['reconcile_s']:.2f} s")
        prev = cur
    mn = minimum(w.n, w.policies)
    total_min = sum(mn.values())
    worst = max(r["aws_total"] for r in rows)
    info_refs = max(sum(v for k, v in r["git"].items() if "info/refs" in k) for r in rows)
    fetches = max(sum(v for k, v in r["git"].items() if k.startswith("POST")) for r in rows)
    return {"n": w.n, "policies": w.policies, "poll_interval_s": interval, "polls": rows, "minimum": mn, "minimum_total": total_min,
            "max_aws_requests_per_poll": worst, "ratio_to_minimum": (worst / total_min) if total_min else (0.0 if worst == 0 else float("inf")),
            "max_ref_advertisements_per_poll": info_refs, "max_fetches_per_poll": fetches,
            "mean_reconcile_s": statistics.mean(r["reconcile_s"] for r in rows),
            "mean_git_poll_s": statistics.mean(r["git_poll_s"] for r in rows),
            "mean_berth_cpu_s_per_poll": statistics.mean(r["berth_cpu_s"] for r in rows),
            "mean_moto_cpu_s_per_poll": statistics.mean(r["moto_cpu_s"] for r in rows)}


def footprint(w: World, seconds: float, log) -> dict:
    """Samples the daemon's VmRSS and CPU time once a second for `seconds`."""
    pid = w.daemon.pid
    start = proc_stats(pid)
    c0 = w.cycles()
    samples = [start]
    deadline = time.time() + seconds
    while time.time() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.time())))
        samples.append(proc_stats(pid))
    end = samples[-1]
    rss = [s["rss_kib"] / 1024 for s in samples]
    cpu = end["cpu_s"] - start["cpu_s"]
    polls = w.cycles() - c0
    out = {"n": w.n, "seconds": end["t"] - start["t"], "samples": len(samples), "rss_mean_mib": statistics.mean(rss),
           "anon_mean_mib": statistics.mean(s["anon_kib"] / 1024 for s in samples),
           "file_mean_mib": statistics.mean(s["file_kib"] / 1024 for s in samples), "threads": end["threads"],
           "rss_max_mib": max(rss), "rss_min_mib": min(rss), "hwm_mib": end["hwm_kib"] / 1024, "cpu_s": cpu,
           "cpu_percent": 100 * cpu / max(end["t"] - start["t"], 1e-9), "polls": polls, "cpu_s_per_poll": cpu / polls if polls else None}
    for path in ("/metrics", "/status"):
        times, size = [], 0
        for _ in range(5):
            t = time.perf_counter()
            size = len(http_get(w.murl + path)[1])
            times.append(time.perf_counter() - t)
        out["scrape_" + path.strip("/")] = {"ms": 1000 * statistics.median(times), "bytes": size}
    out["anon_kib_by_mapping"] = anon_by_mapping(pid)
    out["file_kib_by_mapping"] = file_by_mapping(pid)
    log(f"  N={w.n} idle {out['seconds']:.0f} s: RSS mean {out['rss_mean_mib']:.1f} MiB, max {out['rss_max_mib']:.1f} MiB, "
        f"CPU {out['cpu_percent']:.2f} % ({polls} polls); anon KiB by mapping {out['anon_kib_by_mapping']}; "
        f"file KiB {dict(list(out['file_kib_by_mapping'].items())[:5])}")
    return out


def timeline(w: World, t0: float) -> dict:
    """What happened after t0, per AWS operation (count, first start, last end, summed
    time in flight, all relative to t0) and every git request."""
    ops: dict[str, dict] = {}
    for tr, td, op, _ in w.proxy_events(t0):
        o = ops.setdefault(op, {"n": 0, "first_s": tr - t0, "last_s": td - t0, "busy_s": 0.0})
        o["n"] += 1
        o["first_s"] = min(o["first_s"], tr - t0)
        o["last_s"] = max(o["last_s"], td - t0)
        o["busy_s"] += td - tr
    ops = dict(sorted(ops.items(), key=lambda kv: kv[1]["first_s"]))
    return {"aws": ops, "git": [[round(a - t0, 4), round(b - t0, 4), k] for a, b, k in w.git_events(t0)]}


def moto_busy(w: World, t0: float, t1: float) -> dict:
    """How long moto was serving at least one request between t0 and t1 (the union of the
    requests' time in flight at the proxy), and the first request's start: the part of a
    converge that is moto's, as against the client's own time."""
    spans = sorted((max(a, t0), min(b, t1)) for a, b, _, _ in w.proxy_events(t0) if a < t1)
    busy, end, first = 0.0, t0, None
    for a, b in spans:
        first = a if first is None else first
        if b > end:
            busy += b - max(a, end)
            end = b
    return {"moto_busy_s": busy, "first_request_after_s": (first - t0) if first is not None else None,
            "requests": len(spans)}


def spread(n: int, k: int) -> list[int]:
    return sorted({(j * n) // k for j in range(k)})


def converge_berth(w: World, k: int, log) -> dict:
    """Scenario 2 (berth): commit changing k services, push, webhook; time until moto shows
    every changed service on a new task definition with the new image."""
    idx = spread(w.n, k)
    names = [f"svc{i:04d}" for i in idx]
    before_td = w.task_definitions(names)
    tag = w.commit_change(idx, f"change {k} services")
    c0 = w.cycles()
    before = w.proxy_counts()["counts"]
    t0 = time.time()
    push_s = w.git_push()
    t_push = time.time()
    w.webhook()
    # Wait on the proxy (no load on moto) until berth has sent an UpdateService for every
    # changed service, then confirm from moto that each one is on a new task definition. The
    # converge time is when the last of those UpdateService calls was answered.
    updates = lambda: [e for e in w.proxy_events(t_push) if e[2] == "UpdateService" and e[3] in names]
    wait_until(f"{k} UpdateService calls", 300 + 2 * k, lambda: len({e[3] for e in updates()}) >= k, every=0.05)
    cur = w.task_definitions(names)
    if not all(cur.get(n) and cur[n] != before_td.get(n) for n in names):
        raise RuntimeError("moto does not show every changed service on a new task definition")
    events = updates()
    t1 = max(e[1] for e in events)
    w.wait_cycle(c0, 300)
    after = w.proxy_counts()["counts"]
    # Every changed service must run the new image.
    wrong = []
    for n, td in w.task_definitions(names).items():
        img = w.ecs.describe_task_definition(taskDefinition=td)["taskDefinition"]["containerDefinitions"][0]["image"]
        if not img.endswith(f"/{n}:{tag}"):
            wrong.append((n, img))
    if wrong:
        raise RuntimeError(f"services not on the new image: {wrong[:3]}")
    aws = diff_counts(before, after)
    out = {"k": k, "n": w.n, "seconds": t1 - t0, "git_push_s": push_s, "timeline_after_push": timeline(w, t_push),
           "confirmed_by_moto": True,
           "first_update_after_push_s": min(e[0] for e in events) - t_push if events else None,
           "last_update_done_after_push_s": max(e[1] for e in events) - t_push if events else None,
           "update_services": len(events), "aws": aws, "aws_total": sum(aws.values())}
    out["aws_in_flight_s"] = sum(o["busy_s"] for o in out["timeline_after_push"]["aws"].values())
    out.update(moto_busy(w, t_push, t1))
    log(f"  berth K={k}/N={w.n}: {out['seconds']:.2f} s (push {push_s:.2f} s; last UpdateService answered "
        f"{out['last_update_done_after_push_s']:.2f} s after the push), {out['aws_total']} requests; moto busy "
        f"{out['moto_busy_s']:.2f} s, first request {out['first_request_after_s']:.3f} s after the push")
    return out


def converge_ecs_deploy(w: World, k: int, ecs_bin: str, log) -> dict:
    """Scenario 2 (baseline): `ecs deploy` once per changed service, in sequence."""
    idx = spread(w.n, k)
    names = [f"svc{i:04d}" for i in idx]
    tag = f"ci-{k}"
    w.push_images([(n, tag) for n in names])
    before_td = w.task_definitions(names)
    before = w.proxy_counts()["counts"]
    env = aws_env(w.proxy_url, w.dir)
    log_path = w.dir / f"ecs-deploy-{k}.log"
    per = []
    with open(log_path, "w") as logf:
        t0 = time.time()
        for n in names:
            t = time.time()
            p = subprocess.run([ecs_bin, "deploy", CLUSTER, n, "-i", n, f"{REGISTRY}/{n}:{tag}", "--timeout", "-1"],
                               env=env, stdout=logf, stderr=subprocess.STDOUT, timeout=180)
            per.append(time.time() - t)
            if p.returncode != 0:
                raise RuntimeError(f"ecs deploy {n} exited {p.returncode}; see {log_path}")
        t1 = time.time()
    after = w.proxy_counts()["counts"]
    cur = w.task_definitions(names)
    for n in names:
        img = w.ecs.describe_task_definition(taskDefinition=cur[n])["taskDefinition"]["containerDefinitions"][0]["image"]
        if cur[n] == before_td[n] or not img.endswith(f":{tag}"):
            raise RuntimeError(f"ecs deploy did not move {n}: {cur[n]} {img}")
    aws = diff_counts(before, after)
    tl = timeline(w, t0)
    out = {"k": k, "n": w.n, "seconds": t1 - t0, "per_service_mean_s": statistics.mean(per), "per_service_max_s": max(per),
           "aws": aws, "aws_total": sum(aws.values()), "aws_in_flight_s": sum(o["busy_s"] for o in tl["aws"].values()),
           **moto_busy(w, t0, t1)}
    log(f"  ecs deploy K={k}: {out['seconds']:.2f} s ({out['per_service_mean_s']:.2f} s per service), {out['aws_total']} requests; "
        f"moto busy {out['moto_busy_s']:.2f} s")
    return out


def latency(w: World, mode: str, samples: int, interval: float | None, rng: random.Random, log) -> dict:
    """Scenario 3: git push -> first UpdateService at the proxy."""
    rows, detect = [], []
    for s in range(samples):
        if mode == "poll":
            # Push at a random phase of the poll timer, stratified over the samples (sample s
            # lands in the s-th slice of the interval after a poll), so that a handful of
            # samples covers the interval evenly.
            time.sleep(interval * (s + rng.random()) / samples)
        i = (s * 7 + 3) % w.n
        w.commit_change([i], f"latency sample {s}")
        c0 = w.cycles()
        w.git_push()
        t0 = time.time()
        if mode == "webhook":
            w.webhook()
        limit = (interval or 0) + 120
        ev = wait_until("the first UpdateService", limit,
                        lambda: [e for e in w.proxy_events(t0) if e[2] == "UpdateService"], every=0.05)
        first = min(e[0] for e in ev)
        rows.append(first - t0)
        refs = [g[0] for g in w.git_events(t0) if "info/refs" in g[2]]
        detect.append((min(refs) - t0) if refs else None)
        w.wait_cycle(c0, limit)
        log(f"  {mode} sample {s + 1}: {rows[-1]:.3f} s (first ref advertisement after the push at {detect[-1]:.3f} s)")
    acts = [r - d for r, d in zip(rows, detect) if d is not None]
    return {"mode": mode, "n": w.n, "poll_interval_s": interval, "samples_s": rows, "mean_s": statistics.mean(rows),
            "max_s": max(rows), "min_s": min(rows), "detect_s": detect,
            "mean_act_s": statistics.mean(acts) if acts else None}


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------

def table(title: str, head: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in head]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip()
    return "\n".join([f"\n{title}", line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def render(res: dict) -> str:
    out = []
    m = res["meta"]
    out.append(f"berth e2e benchmarks  {m['date']}  berth {m['berth_commit'][:12]} ({m['build']})  moto {m['moto']}  "
               f"{m['cpus']} cores, {m['mem_gib']} GiB  quick={m['quick']}  {m['seconds']:.0f} s"
               + (f"  load avg mean {m['loadavg_1min']['mean']:.2f} max {m['loadavg_1min']['max']:.2f}" if m.get("loadavg_1min") else ""))
    s1 = res.get("steady_poll", [])
    if s1:
        out.append(table("1. Steady-state poll cost (per poll, worst of the measured polls)",
                         ["N", "P", "AWS req/poll", "minimum", "ratio", "by operation", "writes", "git ref adv.", "git fetches", "reconcile s", "moto CPU s"],
                         [[r["n"], r["policies"], r["max_aws_requests_per_poll"], r["minimum_total"], f"{r['ratio_to_minimum']:.2f}",
                           " ".join(f"{k}={v}" for k, v in r["polls"][-1]["aws"].items()) or "-",
                           sum(sum(p["writes"].values()) for p in r["polls"]), r["max_ref_advertisements_per_poll"], r["max_fetches_per_poll"],
                           f"{r['mean_reconcile_s']:.2f}", f"{r['mean_moto_cpu_s_per_poll']:.2f}"] for r in s1]))
    ic = res.get("initial_converge", [])
    if ic:
        out.append(table("Initial converge (empty account -> N services, daemon start to /readyz)",
                         ["N", "seconds", "AWS requests", "writes", "peak RSS MiB"],
                         [[r["n"], f"{r['ready_s']:.1f}", sum(r["aws"].values()),
                           sum(v for k, v in r["aws"].items() if not k.startswith(READ_PREFIXES)), f"{r['proc']['hwm_kib'] / 1024:.1f}"] for r in ic]))
    s2 = res.get("converge")
    if s2:
        rows = []
        for b in s2["berth"]:
            e = next((x for x in s2["ecs_deploy"] if x["k"] == b["k"]), None)
            # The best berth could do against this moto with the requests it makes: the push,
            # then moto serving them back to back.
            floor = b["git_push_s"] + b["moto_busy_s"]
            rows.append([b["k"], b["n"], f"{b['seconds']:.2f}", b["aws_total"], f"{b['moto_busy_s']:.2f}",
                         f"{b['seconds'] - floor:.2f}", f"{e['seconds']:.2f}" if e else "-",
                         e["aws_total"] if e else "-", f"{e['moto_busy_s']:.2f}" if e else "-",
                         f"{e['per_service_mean_s']:.2f}" if e else "-",
                         f"{e['seconds'] / b['seconds']:.1f}x" if e else "-", f"{e['seconds'] / floor:.1f}x" if e else "-"])
        out.append(table("2. Converge time, commit changing K of N services (push -> every changed service on its new image); "
                         "moto busy = time moto was serving a request; berth own = berth s - push - moto busy; "
                         "ratio at moto's floor = ecs-deploy s / (push + berth's moto busy)",
                         ["K", "N", "berth s", "berth req", "moto busy s", "berth own s", "ecs-deploy s", "ecs-deploy req",
                          "moto busy s", "ecs-deploy s/service", "ratio", "ratio at moto's floor"], rows))
        trows = []
        for b in s2["berth"]:
            for op, o in b["timeline_after_push"]["aws"].items():
                trows.append([b["k"], op, o["n"], f"{o['first_s']:.3f}", f"{o['last_s']:.3f}", f"{o['busy_s']:.3f}"])
            for g in b["timeline_after_push"]["git"]:
                trows.append([b["k"], "git " + g[2].split("?")[0], 1, f"{g[0]:.3f}", f"{g[1]:.3f}", f"{g[1] - g[0]:.3f}"])
        out.append(table("2b. berth's requests after the push (seconds after the push; in flight = summed request time at the proxy)",
                         ["K", "request", "count", "first start", "last end", "in flight"], trows))
    s3 = res.get("latency", [])
    if s3:
        out.append(table("3. Change latency, git push -> first UpdateService",
                         ["trigger", "N", "poll interval", "samples", "mean s", "max s", "min s", "mean ref-adv -> UpdateService s"],
                         [[r["mode"], r["n"], f"{r['poll_interval_s']:.0f} s" if r["poll_interval_s"] else "-", len(r["samples_s"]),
                           f"{r['mean_s']:.3f}", f"{r['max_s']:.3f}", f"{r['min_s']:.3f}",
                           f"{r['mean_act_s']:.3f}" if r["mean_act_s"] is not None else "-"] for r in s3]))
    s4 = res.get("footprint", [])
    if s4:
        out.append(table("4. Footprint of the idle daemon (polling)",
                         ["N", "daemon", "seconds", "polls", "RSS mean MiB", "RSS max MiB", "anon MiB", "file MiB", "threads", "VmHWM MiB", "CPU %", "CPU s/poll"],
                         [[r["n"], r.get("start", "-"), f"{r['seconds']:.0f}", r["polls"], f"{r['rss_mean_mib']:.1f}", f"{r['rss_max_mib']:.1f}",
                           f"{r['anon_mean_mib']:.1f}", f"{r['file_mean_mib']:.1f}", r["threads"],
                           f"{r['hwm_mib']:.1f}", f"{r['cpu_percent']:.2f}", f"{r['cpu_s_per_poll']:.3f}" if r["cpu_s_per_poll"] else "-"] for r in s4]))
    pk = res.get("peak_converge", [])
    if pk:
        out.append(table("4b. Peak RSS (VmHWM) during a converge",
                         ["what", "N", "K", "RSS before MiB", "VmHWM MiB"],
                         [[r["what"], r["n"], r["k"], f"{r['rss_before_mib']:.1f}" if r.get("rss_before_mib") else "-", f"{r['hwm_mib']:.1f}"] for r in pk]))
    mr = res.get("moto_raw", [])
    if mr:
        out.append(table("moto's own cost: DescribeServices with 10 names (include TAGS)",
                         ["N in cluster", "calls", "raw HTTP ms", "boto3 ms", "boto3 via proxy ms", "DescribeScalableTargets ms"],
                         [[r["n"], r["calls"], f"{r['raw_http_moto']['mean_ms']:.1f}", f"{r['boto3_moto']['mean_ms']:.1f}",
                           f"{r['boto3_via_proxy']['mean_ms']:.1f}", f"{r['boto3_describe_scalable_targets_moto']['mean_ms']:.1f}"] for r in mr]))
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def ensure_ecs_deploy(path: Path, log) -> str:
    ecs = path / "bin/ecs"
    if not ecs.exists():
        log(f"installing {ECS_DEPLOY_PIN} into the throwaway venv {path}")
        subprocess.run([shutil.which("python3") or "python3", "-m", "venv", str(path)], check=True, timeout=300)
        subprocess.run([str(path / "bin/pip"), "install", "-q", ECS_DEPLOY_PIN], check=True, timeout=600)
    return str(ecs)


def bench_setup(berth_arg: str | None, prefix: str) -> tuple[str, str, Path, str]:
    """The berth binary (copied into a fresh work directory: a rebuild elsewhere must not
    swap it mid-run), the moto server, and that directory."""
    target = os.environ.get("CARGO_TARGET_DIR", str(Path.home() / ".cache/berth/target"))
    berth_src = berth_arg or str(Path(target) / "release/berth")
    if not Path(berth_src).exists():
        sys.exit(f"no berth binary at {berth_src}: run `cargo build --release --locked --bin berth` (or pass --berth)")
    moto_bin = os.environ.get("BERTH_MOTO_SERVER") or str(Path(sys.executable).parent / "moto_server")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    berth = str(base / "berth")
    shutil.copy2(berth_src, berth)
    return berth_src, moto_bin, base, berth


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="mode")
    p = sub.add_parser("_proxy")
    p.add_argument("--upstream", type=int, required=True)
    g = sub.add_parser("_githttp")
    g.add_argument("--root", required=True)
    ap.add_argument("--quick", action="store_true", help="small N and short durations (about 2 minutes)")
    ap.add_argument("--json", help="also write the figures as JSON to this path")
    ap.add_argument("--berth", help="berth binary (default: $CARGO_TARGET_DIR/release/berth)")
    ap.add_argument("--commit", help="the berth commit the binary was built from (default: this checkout's HEAD)")
    ap.add_argument("--ecs-deploy-venv", default="/tmp/berth-bench-ecs-deploy-venv", help="throwaway venv for ecs-deploy")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, repos)")
    ap.add_argument("--sizes", help="comma-separated N of the worlds (default 0,100,500,1000; --quick 0,50)")
    ap.add_argument("--idle", type=float, help="seconds of idle sampling on the largest world (default 300; --quick 20)")
    ap.add_argument("--restart-idle", type=float, help="seconds of idle sampling after restarting the daemon on the largest, "
                    "converged world (default 60; --quick 10; 0 skips the restart)")
    ap.add_argument("--daemon-prefix", default="", help="command put before `berth daemon`, for profiling (e.g. "
                    "'heaptrack -o /tmp/berth.heap'); the RSS/CPU figures are then the wrapper's, not berth's")
    args = ap.parse_args()
    if args.mode == "_proxy":
        return run_proxy(args.upstream)
    if args.mode == "_githttp":
        return run_githttp(args.root)

    def log(msg: str):
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    berth_src, moto_bin, base, berth = bench_setup(args.berth, "berth-e2e-")
    ecs_bin = ensure_ecs_deploy(Path(args.ecs_deploy_venv), log)
    import moto  # noqa: F401 (version only)
    q = args.quick
    meta = {
        "date": _dt.date.today().isoformat(), "quick": q, "cpus": os.cpu_count(),
        "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
        "moto": moto.__version__, "berth_binary": berth_src,
        "berth_sha256": hashlib.sha256(Path(berth).read_bytes()).hexdigest(),
        "berth_commit": args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
        "build": next((b for b in ("release-small", "release", "debug") if f"/{b}/" in berth_src), "unknown"),
        "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
        "ecs_deploy": subprocess.run([ecs_bin, "--version"], capture_output=True, text=True).stdout.strip() or ECS_DEPLOY_PIN,
        "python": sys.version.split()[0],
    }
    res: dict = {"meta": meta, "steady_poll": [], "initial_converge": [], "footprint": [], "peak_converge": [], "latency": [], "moto_raw": []}
    # Other work on the machine skews timings: sample the load average throughout.
    loads: list[float] = []
    stop_load = threading.Event()
    def sample_load():
        while not stop_load.wait(5):
            loads.append(os.getloadavg()[0])
    threading.Thread(target=sample_load, daemon=True).start()
    rng = random.Random(5)
    poll_s = 3 if q else 5
    polls = 3
    idle_small = 10 if q else 30
    t_start = time.time()
    try:
        sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([0, 50] if q else [0, 100, 500, 1000])
        for n in sizes:
            log(f"world N={n}: moto, proxy, git server, monorepo, seed")
            w = World(n, base, moto_bin, berth, args.daemon_prefix.split())
            log(f"  set up in {w.setup_s:.1f} s")
            try:
                st = w.start_daemon(f"{poll_s}s")
                st["n"] = n
                res["initial_converge"].append(st)
                log(f"  initial converge of {n} services: {st['ready_s']:.1f} s, peak RSS {st['proc']['hwm_kib'] / 1024:.1f} MiB")
                if n in (50, 100):
                    res["peak_converge"].append({"what": "initial converge (create every service)", "n": n, "k": n,
                                                 "hwm_mib": st["proc"]["hwm_kib"] / 1024})
                res["steady_poll"].append(steady_polls(w, polls, poll_s, log))
                idle = (args.idle or (20 if q else 300)) if n == max(sizes) else idle_small
                fp = footprint(w, idle, log)
                fp["start"] = "after creating all" if n else "-"
                res["footprint"].append(fp)
                w.stop_daemon()
                restart_idle = args.restart_idle if args.restart_idle is not None else (10 if q else 60)
                if n == max(sizes) and n and restart_idle > 0:
                    # The same world again, the daemon restarted on an account already converged:
                    # separates what the first converge leaves behind from the steady state.
                    st2 = w.start_daemon(f"{poll_s}s")
                    fp = footprint(w, restart_idle, log)
                    fp.update(start="restarted, converged", ready_s=st2["ready_s"])
                    res["footprint"].append(fp)
                    w.stop_daemon()
                if n:
                    res["moto_raw"].append(dict(moto_raw(w, 50 if q else 200), n=n))
                if n == (50 if q else 500):
                    log(f"  scenario 2 on N={n}: berth daemon (webhook), then ecs deploy")
                    w.start_daemon("10m")
                    ks = [5] if q else [10, 100]
                    conv = {"berth": [], "ecs_deploy": []}
                    for k in ks:
                        if k == max(ks):
                            Path(f"/proc/{w.daemon.pid}/clear_refs").write_text("5")  # resets VmHWM
                            rss0 = proc_stats(w.daemon.pid)["rss_kib"] / 1024
                        conv["berth"].append(converge_berth(w, k, log))
                        if k == max(ks):
                            res["peak_converge"].append({"what": "commit changing K services (daemon)", "n": n, "k": k, "rss_before_mib": rss0,
                                                         "hwm_mib": proc_stats(w.daemon.pid)["hwm_kib"] / 1024})
                    w.stop_daemon()
                    for k in ks:
                        conv["ecs_deploy"].append(converge_ecs_deploy(w, k, ecs_bin, log))
                    res["converge"] = conv
                if n == (50 if q else 100):
                    log(f"  scenario 3 on N={n}: webhook")
                    w.start_daemon("10m")
                    res["latency"].append(latency(w, "webhook", 2 if q else 5, None, rng, log))
                    w.stop_daemon()
                    interval = 10 if q else 60
                    log(f"  scenario 3 on N={n}: polling every {interval} s")
                    w.start_daemon(None if interval == 60 else f"{interval}s")
                    res["latency"].append(latency(w, "poll", 2 if q else 5, float(interval), rng, log))
                    w.stop_daemon()
            finally:
                w.close()
    finally:
        kill_all()
        stop_load.set()
        res["meta"]["seconds"] = time.time() - t_start
        res["meta"]["loadavg_1min"] = {"mean": statistics.mean(loads), "max": max(loads)} if loads else None
        print(render(res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
            log(f"wrote {args.json}")
        if args.keep:
            log(f"work directory kept: {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
