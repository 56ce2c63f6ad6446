#!/usr/bin/env python3
"""Fault experiments of issue 12 against moto on loopback, on a generated monorepo.

    source scripts/setup.sh
    cargo build --release --locked --bin berth
    $VENV/bin/python benches/faults.py [--n 50] [--json out.json]

It reuses the worlds of benches/e2e.py (moto, a counting proxy, a git server, N services
with a secret each and their images) and its proxy's fault injection (`/_bench/chaos`):

  1. 20 % of all AWS requests failing in one way (lost answers: carried out, the answer
     dropped; 503; throttling; dropped connections; 10 s delays): `berth apply` until it
     exits 0 (at most five runs); the time it took, and the revisions on the moto side
     beyond one per family (duplicates);
  2. a console edit of 40 services (each pointed at a hand-registered revision), healed by
     one `berth apply`: the new revisions it registered (reuse means none);
  3. AWS gone for 30 s (moto killed) and back with its state lost (a fresh moto on the same
     port, the cluster, parameters and images put back as the platform would): how long
     the running daemon (5 s polls) takes to have every service `Synced` again.

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

FAULTS = ["lose", "5xx", "throttle", "drop", "delay"]


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
        extra = revisions(w) - n
        diff = subprocess.run([w.berth, "diff", "--config", str(cfg), "--env", e2e.CLUSTER],
                              env=e2e.aws_env(None, w.dir), capture_output=True, text=True).returncode
        return {"fault": fault, "converged": code == 0 and diff == 0, "applies": runs, "seconds": round(took, 1),
                "duplicate_revisions": extra}
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
        port = int(w.moto_url.rsplit(":", 1)[1])
        e2e.stop(w.moto)
        log(f"  moto stopped; AWS gone for {down_s:.0f} s")
        time.sleep(down_s)
        _, status = e2e.http_get(w.murl + "/status")
        during = json.loads(status)["environments"][0].get("aws_unavailable")
        ready_during = e2e.http_get(w.murl + "/readyz")[0]
        w.moto, _ = e2e.spawn([moto_bin, "-H", "127.0.0.1", "-p", str(port)], w.dir / "moto-2.log")
        e2e.wait_until("moto again", 30, lambda: e2e.http_get(w.moto_url + "/moto-api/", 2)[0] == 200)
        back = time.time()
        # The platform puts back what berth does not own: the cluster, parameters, images.
        w.ecs = w.client("ecs")
        w.ecr = w.client("ecr")
        w.repositories = set()
        w.ecs.create_cluster(clusterName=e2e.CLUSTER)
        w._seed()
        seeded = time.time() - back

        def all_synced():
            s = json.loads(e2e.http_get(w.murl + "/status")[1])["environments"][0]
            live = len(w.task_definitions(w.names))
            return live == n and all(x["sync"] == "Synced" for x in s["services"]) and not s.get("aws_unavailable")
        e2e.wait_until("every service Synced again", 300, all_synced, every=0.5)
        return {"down_s": down_s, "aws_unavailable_during": bool(during), "readyz_during": ready_during,
                "seed_s": round(seeded, 1), "synced_after_s": round(time.time() - back, 1), "poll_interval_s": 5}
    finally:
        w.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="services in each world (default 50)")
    ap.add_argument("--berth", help="berth binary (default: $CARGO_TARGET_DIR/release/berth)")
    ap.add_argument("--json", help="also write the figures as JSON to this path")
    ap.add_argument("--only", help="comma-separated: faults,heal,outage (default all)")
    args = ap.parse_args()
    _, moto_bin, base, berth = e2e.bench_setup(args.berth, "berth-faults-")
    only = set((args.only or "faults,heal,outage").split(","))
    res: dict = {"n": args.n, "faults": [], "heal": None, "outage": None}
    try:
        if "faults" in only:
            for seed, fault in enumerate(FAULTS, 1):
                log(f"20 % {fault}, {args.n} services")
                res["faults"].append(faulty_converge(args.n, base, moto_bin, berth, fault, seed))
                log(f"  {res['faults'][-1]}")
        if "heal" in only:
            log(f"console edit of {min(40, args.n)} services, healed")
            res["heal"] = heal_reuses(args.n, min(40, args.n), base, moto_bin, berth)
            log(f"  {res['heal']}")
        if "outage" in only:
            log("AWS gone for 30 s, back with its state lost")
            res["outage"] = outage(args.n, base, moto_bin, berth, 30.0)
            log(f"  {res['outage']}")
    finally:
        e2e.kill_all()
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(res, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
