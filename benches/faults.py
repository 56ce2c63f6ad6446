#!/usr/bin/env python3
"""Fault experiments of issue 12 against moto on loopback, on a generated monorepo.

    source scripts/setup.sh
    cargo build --release --locked --bin berth
    $VENV/bin/python benches/faults.py [--n 50] [--json out.json]

It reuses the worlds of benches/e2e.py (moto, a counting proxy, a git server, N services
with a secret each and their images) and its proxy's fault injection (`/_bench/chaos`):

  1. 20 % of all AWS requests failing in one way (lost answers: carried out, the answer
     dropped; 503; throttling; dropped connections; 10 s delays), and 20 % failing in a mix
     of 500/503, throttling, drops and 10 s delays (issue 12's probe, 144 s then): `berth
     apply` until it exits 0 (at most five runs); the time it took, and the revisions on the
     moto side beyond one per family (duplicates);
  2. a console edit of 40 services (each pointed at a hand-registered revision), healed by
     one `berth apply`: the new revisions it registered (reuse means none);
  3. AWS unreachable for 30 s (the proxy drops every connection) while its ECS services are
     lost (deleted behind berth's back), then reachable again: how long the running daemon
     (5 s polls) takes to have every service re-created and `Synced`;
  4. 50 slow-loris clients on the metrics listener (headers never finished): /metrics
     answered meanwhile, when the daemon closed them; a webhook delivery sent twice.

Figures are printed and, with --json, written; docs/benchmarks.md carries them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e  # noqa: E402

FAULTS = ["lose", "5xx", "throttle", "drop", "delay", "mix"]


def log(msg: str):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def revisions(w: e2e.World) -> int:
    # moto answers ListTaskDefinitions with every ACTIVE revision at once (no paging).
    return len(w.ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"])


def chaos(w: e2e.World, percent: int, fault: str, seed: int):
    e2e.http_get(f"{w.proxy_url}/_bench/chaos?percent={percent}&fault={fault}&seed={seed}")


def apply(w: e2e.World, cfg: Path) -> subprocess.CompletedProcess:
    env = e2e.aws_env(None, w.dir)
    return subprocess.run([w.berth, "apply", "--config", str(cfg), "--env", e2e.CLUSTER],
                          env=env, capture_output=True, text=True, timeout=900)


def faulty_converge(n: int, base: Path, moto_bin: str, berth: str, fault: str, seed: int) -> dict:
    w = e2e.World(n, base / f"{fault}", moto_bin, berth)
    try:
        cfg = w.write_config(None)
        chaos(w, 20, fault, seed)
        t0, runs, code = time.time(), 0, None
        while runs < 5 and code != 0:
            runs += 1
            code = apply(w, cfg).returncode
        took = time.time() - t0
        chaos(w, 0, fault, 0)
        requests = w.proxy_counts()["total"]
        extra = revisions(w) - n
        diff = subprocess.run([w.berth, "diff", "--config", str(cfg), "--env", e2e.CLUSTER],
                              env=e2e.aws_env(None, w.dir), capture_output=True, text=True).returncode
        return {"fault": fault, "converged": code == 0 and diff == 0, "applies": runs, "seconds": round(took, 1),
                "aws_requests": requests, "duplicate_revisions": extra}
    finally:
        w.close()


def heal_reuses(n: int, edits: int, base: Path, moto_bin: str, berth: str) -> dict:
    w = e2e.World(n, base / "heal", moto_bin, berth)
    try:
        cfg = w.write_config(None)
        assert apply(w, cfg).returncode == 0
        for name in w.names[:edits]:
            td = w.ecs.describe_task_definition(taskDefinition=f"{name}-{e2e.CLUSTER}")["taskDefinition"]
            keep = {k: td[k] for k in ("family", "containerDefinitions", "executionRoleArn", "taskRoleArn",
                                       "networkMode", "requiresCompatibilities") if k in td}
            arn = w.ecs.register_task_definition(**keep, cpu="1024", memory="2048")["taskDefinition"]["taskDefinitionArn"]
            w.ecs.update_service(cluster=e2e.CLUSTER, service=name, taskDefinition=arn)
        before = revisions(w)
        t0 = time.time()
        code = apply(w, cfg).returncode
        took = time.time() - t0
        running = w.task_definitions(w.names[:edits])
        back = sum(1 for name, arn in running.items() if arn.endswith(":1"))
        return {"edited": edits, "apply_exit": code, "seconds": round(took, 1), "new_revisions": revisions(w) - before,
                "back_on_revision_1": back}
    finally:
        w.close()


def outage(n: int, base: Path, moto_bin: str, berth: str, down_s: float) -> dict:
    w = e2e.World(n, base / "outage", moto_bin, berth)
    try:
        w.start_daemon("5s")
        # AWS unreachable: every connection dropped (the proxy stands for the network).
        chaos(w, 100, "drop", 1)
        log(f"  AWS unreachable for {down_s:.0f} s; its ECS services are lost meanwhile")
        for j in range(0, n, 10):
            for name in w.names[j:j + 10]:
                w.ecs.delete_service(cluster=e2e.CLUSTER, service=name, force=True)
        time.sleep(down_s)
        _, status = e2e.http_get(w.murl + "/status")
        during = json.loads(status)["environments"][0].get("aws_unavailable")
        ready_during = e2e.http_get(w.murl + "/readyz")[0]
        chaos(w, 0, "drop", 0)
        back = time.time()

        def active() -> int:
            return sum(1 for j in range(0, n, 10)
                       for x in w.ecs.describe_services(cluster=e2e.CLUSTER, services=w.names[j:j + 10])["services"]
                       if x["status"] == "ACTIVE")

        def all_synced():
            s = json.loads(e2e.http_get(w.murl + "/status")[1])["environments"][0]
            synced = all(x["sync"] == "Synced" for x in s["services"]) and not s.get("aws_unavailable")
            return synced and active() == n
        e2e.wait_until("every service Synced again", 300, all_synced, every=0.5)
        return {"down_s": down_s, "aws_unavailable_during": bool(during), "readyz_during": ready_during,
                "synced_after_s": round(time.time() - back, 1), "poll_interval_s": 5}
    finally:
        w.close()


def listeners(base: Path, moto_bin: str, berth: str, clients: int) -> dict:
    """Slow-loris clients on the metrics listener, /metrics meanwhile, and a replayed delivery."""
    import socket
    w = e2e.World(10, base / "listeners", moto_bin, berth)
    try:
        w.start_daemon("60s")
        socks = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", w.mport))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: berth\r\nX-Slow: ")
            socks.append(s)
        t0 = time.time()
        times = []
        for _ in range(20):
            t = time.time()
            assert e2e.http_get(w.murl + "/metrics")[0] == 200
            times.append((time.time() - t) * 1000)
        closed = 0
        for s in socks:
            s.settimeout(max(0.1, 60 - (time.time() - t0)))
            try:
                while s.recv(4096):
                    pass
                closed += 1
            except OSError:
                closed += 1 if not isinstance(sys.exc_info()[1], socket.timeout) else 0
        all_closed = time.time() - t0
        before = w.cycles()
        codes = [w.webhook("d-1"), w.webhook("d-1")]
        w.wait_cycle(before, 30)
        time.sleep(3)  # room for a second cycle, were the replay to cause one (60 s polls)
        after_pair = w.cycles()
        return {"slow_clients": clients, "closed": closed, "all_closed_after_s": round(all_closed, 1),
                "metrics_ms_median": round(sorted(times)[len(times) // 2], 1), "metrics_ms_max": round(max(times), 1),
                "replay_codes": codes, "cycles_from_the_pair": after_pair - before}
    finally:
        w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="services in each world (default 50)")
    ap.add_argument("--berth", help="berth binary (default: $CARGO_TARGET_DIR/release/berth)")
    ap.add_argument("--json", help="also write the figures as JSON to this path")
    ap.add_argument("--only", help="comma-separated: faults,heal,outage,listeners (default all)")
    ap.add_argument("--faults", help=f"comma-separated subset of {','.join(FAULTS)} (default all)")
    args = ap.parse_args()
    _, moto_bin, base, berth = e2e.bench_setup(args.berth, "berth-faults-")
    only = set((args.only or "faults,heal,outage,listeners").split(","))
    res: dict = {"n": args.n, "faults": [], "heal": None, "outage": None, "listeners": None}
    try:
        if "faults" in only:
            for seed, fault in enumerate(FAULTS, 1):
                if args.faults and fault not in args.faults.split(","):
                    continue
                log(f"20 % {fault}, {args.n} services")
                res["faults"].append(faulty_converge(args.n, base, moto_bin, berth, fault, seed))
                log(f"  {res['faults'][-1]}")
        if "heal" in only:
            log(f"console edit of {min(40, args.n)} services, healed")
            res["heal"] = heal_reuses(args.n, min(40, args.n), base, moto_bin, berth)
            log(f"  {res['heal']}")
        if "outage" in only:
            log("AWS unreachable for 30 s, back with its services lost")
            res["outage"] = outage(args.n, base, moto_bin, berth, 30.0)
            log(f"  {res['outage']}")
        if "listeners" in only:
            log("50 slow-loris clients on the metrics listener; a replayed webhook delivery")
            res["listeners"] = listeners(base, moto_bin, berth, 50)
            log(f"  {res['listeners']}")
    finally:
        e2e.kill_all()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
