#!/usr/bin/env bash
# berth's demo (README.md's first command): berth converging an example monorepo on a
# local AWS emulator. Everything runs on 127.0.0.1 and stops at the end.
#
#   1. set-up: Python venv with the moto AWS emulator (scripts/setup.sh), `cargo build`
#   2. moto on a free loopback port, seeded like a small AWS account: clusters pre and
#      prod, a VPC, SSM parameters, Secrets Manager secrets, ECR images
#   3. an example monorepo (tests/fixtures/monorepo) in git, with a bare "origin"
#   4. `berth daemon`: pre converges from `develop`, each service routed on the shared load
#      balancers (target group, listener rules, DNS names), with its security groups
#      (docs/routing.md); ledger rolls out blue-green: two target groups, a weighted
#      production rule and a test rule (docs/rollout.md)
#   5. a commit to develop → pre redeploys the changed service only
#   6. tag v1.0.0 → prod converges
#   7. SIGTERM: berth drains and exits 0
#
# KEEP=1 leaves the work directory (config, repos, logs) in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh

# --all-targets: the same build the test command makes (one build, not two with
# different dev-dependency features).
step "cargo build --locked --all-targets"
cargo build --locked --all-targets
BERTH="$CARGO_TARGET_DIR/debug/berth"
PY="$VENV/bin/python"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/berth-demo.XXXXXX")
MOTO_PID=""
DAEMON_PID=""
cleanup() {
  [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null || true
  [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() { # url, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2
  return 1
}

step "moto (the AWS emulator) on 127.0.0.1"
MOTO_PORT=$(free_port)
"$BERTH_MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
wait_http "http://127.0.0.1:$MOTO_PORT/moto-api/" 30
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE="$WORK/none" AWS_SHARED_CREDENTIALS_FILE="$WORK/none"
echo "moto: $AWS_ENDPOINT_URL"

NET=$("$PY" - <<'PY'
import boto3, json
ec2 = boto3.client("ec2"); ecs = boto3.client("ecs"); ssm = boto3.client("ssm"); sm = boto3.client("secretsmanager")
subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
sg = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
for env in ["pre", "prod"]:
    ecs.create_cluster(clusterName=env)
    ssm.put_parameter(Name=f"/{env}/klausapproves/db-host", Value=f"db.{env}.internal", Type="String")
    ssm.put_parameter(Name=f"/{env}/klausapproves/db-password", Value="demo-only", Type="SecureString")
    sm.create_secret(Name=f"{env}/klaus", SecretString=json.dumps({"api_key": "demo-only"}))
    sm.create_secret(Name=f"{env}/klaus-signing", SecretString="demo-only")
# The shared load balancers and hosted zones of the Lemon design (the platform team's, not
# berth's), and the client group of the data stores klausapproves uses.
elb = boto3.client("elbv2"); r53 = boto3.client("route53")
vpc = ec2.describe_vpcs()["Vpcs"][0]["VpcId"]
listeners = []
for name, scheme in [("internal", "internal"), ("public", "internet-facing")]:
    lb = elb.create_load_balancer(Name=name, Subnets=subnets, Scheme=scheme, Type="application")["LoadBalancers"][0]
    listeners.append(elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=80,
        DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Listeners"][0]["ListenerArn"])
    if name == "internal":  # the test listener of blue-green deployments
        test_listener = elb.create_listener(LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTP", Port=8080,
            DefaultActions=[{"Type": "fixed-response", "FixedResponseConfig": {"StatusCode": "404"}}])["Listeners"][0]["ListenerArn"]
private = r53.create_hosted_zone(Name="internal.example.com", CallerReference="demo-private",
    VPC={"VPCRegion": "us-east-1", "VPCId": vpc}, HostedZoneConfig={"PrivateZone": True})["HostedZone"]["Id"].split("/")[-1]
public = r53.create_hosted_zone(Name="example.com", CallerReference="demo-public")["HostedZone"]["Id"].split("/")[-1]
for name in ["klausapproves-rds-clients", "klausapproves-cache-clients"]:
    ec2.create_security_group(GroupName=name, Description="clients of a data store", VpcId=vpc)
print(",".join(subnets), sg, vpc, listeners[0], listeners[1], test_listener, private, public)
PY
)
read -r SUBNETS SG VPC INTERNAL_LISTENER PUBLIC_LISTENER TEST_LISTENER PRIVATE_ZONE PUBLIC_ZONE <<<"$NET"

step "the example monorepo (tests/fixtures/monorepo) in git"
REPO="$WORK/monorepo"
ORIGIN="$WORK/origin.git"
cp -r tests/fixtures/monorepo "$REPO"
# ledger rolls out blue-green (docs/rollout.md): ECS moves its traffic between two target
# groups, with a test rule first and a bake time after.
sed -i 's/^  count: 1$/  count: 1\n  rollout: {strategy: blue-green, bake: 5m}/' "$REPO/services/ledger/deploy/service.yaml"
export GIT_AUTHOR_NAME=demo GIT_AUTHOR_EMAIL=demo@berth.invalid GIT_COMMITTER_NAME=demo GIT_COMMITTER_EMAIL=demo@berth.invalid
git -C "$REPO" init -q -b develop
git -C "$REPO" add -A
git -C "$REPO" commit -q -m "four services"
git clone -q --bare "$REPO" "$ORIGIN"
git -C "$REPO" remote add origin "$ORIGIN"
find "$REPO/services" -name service.yaml | sed "s|$REPO/||"

# What CI does for each pushed commit: build and push the images berth will deploy
# (tagged with each service's newest commit, or X.Y.Z for a release tag).
push_images() {
  local tags=() dir name
  for dir in "$REPO"/services/*/; do
    name=$(basename "$dir")
    tags+=("$name:$(git -C "$REPO" log -1 --first-parent --format=%H -- "services/$name" | cut -c1-12)")
    for t in $(git -C "$REPO" tag --list 'v*'); do tags+=("$name:${t#v}"); done
  done
  "$PY" - "${tags[@]}" <<'PY'
import boto3, json, sys
ecr = boto3.client("ecr")
have = {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
for ref in sys.argv[1:]:
    repo, tag = ref.split(":")
    if repo not in have:
        ecr.create_repository(repositoryName=repo); have.add(repo)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "config": {"digest": "sha256:" + "%064x" % abs(hash(ref))}, "layers": []})
    try:
        ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag=tag)
    except ecr.exceptions.ImageAlreadyExistsException:
        pass
PY
}
push_images

METRICS_PORT=9090
if ! "$PY" -c 'import socket; socket.socket().bind(("127.0.0.1", 9090))' 2>/dev/null; then METRICS_PORT=$(free_port); fi
WEBHOOK_PORT=$(free_port)
CONFIG="$WORK/berth.yaml"
cat >"$CONFIG" <<EOF
# The demo's agent config (see README.md, "Agent config reference").
repo:
  url: file://$ORIGIN
  poll_interval: 3s
  workdir: $WORK/state
aws:
  region: us-east-1
  endpoint_url: $AWS_ENDPOINT_URL
  account_id: "123456789012"
  registry: 123456789012.dkr.ecr.us-east-1.amazonaws.com
environments:
  pre:
    source: {branch: develop}
    cluster: pre
    # moto never finishes an ECS deployment (it has no rollout state machine), so the
    # demo does not wait for rollouts; against AWS, leave the default (wait: true).
    rollout: {wait: false}
    defaults: &defaults
      execution_role: arn:aws:iam::123456789012:role/ecs-execution-{env}
      task_role: arn:aws:iam::123456789012:role/{service}-{env}
      subnets: [$SUBNETS]
      security_groups: [$SG]
    # Lemon's dynamic infrastructure (docs/routing.md): a target group, rules on the shared
    # load balancers, DNS names and security groups per service. (`dashboards: cloudwatch`
    # adds a dashboard per service; moto does not serve the Rust CloudWatch SDK's protocol,
    # so the demo leaves it out: tests/it/routing.rs covers it through the test proxy.)
    ingress:
      vpc: $VPC
      internal_listener: $INTERNAL_LISTENER
      external_listener: $PUBLIC_LISTENER
      domain: example.com
      private_zone: $PRIVATE_ZONE
      public_zone: $PUBLIC_ZONE
      # blue-green, canary and linear services (docs/rollout.md): the test rule's listener
      # and the role ECS changes the rules with.
      test_listener: $TEST_LISTENER
      traffic_role: arn:aws:iam::123456789012:role/ecs-traffic
  prod:
    source: {tags: semver}
    cluster: prod
    rollout: {wait: false}
    defaults: *defaults
metrics: {listen: 127.0.0.1:$METRICS_PORT}
webhook: {listen: 127.0.0.1:$WEBHOOK_PORT, secret_env: BERTH_WEBHOOK_SECRET}
# The deployment history (DynamoDB; berth creates the table) and the API of \`berth sync\`.
state: {table: berth-state}
api: {token_env: BERTH_API_TOKEN}
EOF
"$BERTH" validate --repo "$REPO" --config "$CONFIG"

step "berth daemon"
export BERTH_WEBHOOK_SECRET=demo-webhook-secret BERTH_API_TOKEN=demo-api-token BERTH_ACTOR=demo
# (The SDK warns that the demo's AWS config files, set to nothing, do not exist.)
export RUST_LOG=${RUST_LOG:-info,aws_runtime=error}
"$BERTH" daemon --config "$CONFIG" >"$WORK/berth.log" 2>&1 &
DAEMON_PID=$!
URL="http://127.0.0.1:$METRICS_PORT"
wait_http "$URL/healthz" 30
status() { "$BERTH" status --url "$URL"; }
wait_status() { # python expression over the /status JSON `s`, description
  for _ in $(seq 1 300); do
    if curl -fsS "$URL/status" | "$PY" -c "import json,sys; s=json.load(sys.stdin); sys.exit(0 if ($1) else 1)" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for: $2" >&2
  tail -n 30 "$WORK/berth.log" >&2
  return 1
}
env_of='lambda s, n: next((e for e in s["environments"] if e["name"] == n), {"services": []})'
wait_status "len(($env_of)(s, 'pre')['services']) == 4 and all(x['sync'] == 'Synced' for x in ($env_of)(s, 'pre')['services'])" "pre synced"
status
echo
echo "what berth made for pre's services (docs/routing.md):"
"$PY" - <<'PY'
import boto3
elb = boto3.client("elbv2"); r53 = boto3.client("route53"); ec2 = boto3.client("ec2")
for lb in elb.describe_load_balancers()["LoadBalancers"]:
    for l in elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]:
        for r in elb.describe_rules(ListenerArn=l["ListenerArn"])["Rules"]:
            if not r["IsDefault"]:
                host = r["Conditions"][0]["HostHeaderConfig"]["Values"][0]
                a = r["Actions"][0]
                groups = a.get("ForwardConfig", {}).get("TargetGroups") or [{"TargetGroupArn": a["TargetGroupArn"]}]
                to = ", ".join(g["TargetGroupArn"].split("/")[1] + (f" ({g['Weight']})" if "Weight" in g else "") for g in groups)
                where = f"{lb['LoadBalancerName']}:{l['Port']}"
                print(f"  rule     {where:13} priority {r['Priority']:>5}  {host:42} -> {to}")
for z in r53.list_hosted_zones()["HostedZones"]:
    for rr in r53.list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]:
        if "AliasTarget" in rr:
            print(f"  record   {rr['Name'].rstrip('.'):42} -> {rr['AliasTarget']['DNSName']}")
names = {g["GroupId"]: g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]}
for g in ec2.describe_security_groups(Filters=[{"Name": "tag:berth:managed", "Values": ["true"]}])["SecurityGroups"]:
    rules = [f"tcp {p['FromPort']} from {names.get(u['GroupId'], u['GroupId'])}" for p in g["IpPermissions"] for u in p.get("UserIdGroupPairs", [])]
    print(f"  group    {g['GroupName']:28} {', '.join(rules)}")
PY
echo "(prod has no release tag yet: nothing to deploy there, which is a state, not an error: /readyz answers $(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz"))"

step "a commit to develop: notifier's queue changes"
sed -i 's/value: notifier-pre$/value: notifier-pre-v2/' "$REPO/services/notifier/deploy/pre/config.yaml"
git -C "$REPO" commit -q -am "notifier: new queue"
push_images
git -C "$REPO" push -q origin develop
COMMIT=$(git -C "$REPO" rev-parse HEAD)
echo "pushed $COMMIT"
wait_status "any(x['name'] == 'notifier' and x['commit'] == '$COMMIT' and x['sync'] == 'Synced' for x in ($env_of)(s, 'pre')['services'])" "notifier on $COMMIT"
status
echo "only notifier moved to the new commit (and image tag ${COMMIT:0:12}); the others kept theirs"

step "a release: tag v1.0.0"
git -C "$REPO" tag v1.0.0
push_images
git -C "$REPO" push -q origin v1.0.0
wait_status "len(($env_of)(s, 'prod')['services']) == 3 and all(x['sync'] == 'Synced' for x in ($env_of)(s, 'prod')['services'])" "prod synced"
status
echo "prod runs X.Y.Z images; ledger has no deploy/prod folder, so it is not in prod"

step "a console edit, healed with git's own revision"
RUNNING=$(curl -fsS "$URL/status" | "$PY" -c "import json,sys; s=json.load(sys.stdin); print(next(x['task_definition'] for e in s['environments'] if e['name'] == 'pre' for x in e['services'] if x['name'] == 'notifier'))")
"$PY" - <<'PY'
import boto3
ecs = boto3.client("ecs")
td = ecs.describe_task_definition(taskDefinition="notifier-pre")["taskDefinition"]
keep = {k: td[k] for k in ("family", "containerDefinitions", "executionRoleArn", "taskRoleArn", "networkMode", "requiresCompatibilities") if k in td}
edited = ecs.register_task_definition(**keep, cpu="1024", memory="2048")["taskDefinition"]["taskDefinitionArn"]
ecs.update_service(cluster="pre", service="notifier", taskDefinition=edited)
print(f"someone pointed notifier at {edited.rsplit('/', 1)[1]} by hand")
PY
# Healed means ECS runs git's revision again (the status said so before the edit, too).
for _ in $(seq 1 300); do
  LIVE=$("$PY" -c "import boto3; print(boto3.client('ecs').describe_services(cluster='pre', services=['notifier'])['services'][0]['taskDefinition'])")
  [ "$LIVE" = "$RUNNING" ] && break
  sleep 0.1
done
[ "$LIVE" = "$RUNNING" ] || { echo "timed out waiting for notifier healed" >&2; exit 1; }
REVISIONS=$("$PY" -c "import boto3; print(len(boto3.client('ecs').list_task_definitions(familyPrefix='notifier-pre')['taskDefinitionArns']))")
echo "healed at the next poll: notifier runs ${RUNNING##*/} again, the revision git wants; no copy of it was registered ($REVISIONS revisions in the family: git's two and the hand-made one)"

step "a rollback: notifier back one revision, pinned until git changes it"
"$BERTH" rollback notifier --config "$CONFIG" --env pre --repo "$REPO" --reason "demo"
wait_status "any(x['name'] == 'notifier' and x['health'] == 'Pinned' for x in ($env_of)(s, 'pre')['services'])" "notifier pinned"
status
echo "the daemon reports notifier's drift and leaves it; every other service keeps converging"
sed -i 's/value: notifier-pre-v2$/value: notifier-pre-v3/' "$REPO/services/notifier/deploy/pre/config.yaml"
git -C "$REPO" commit -q -am "notifier: the fix"
push_images
git -C "$REPO" push -q origin develop
FIX=$(git -C "$REPO" rev-parse HEAD)
wait_status "any(x['name'] == 'notifier' and x['commit'] == '$FIX' and x['health'] == 'Healthy' for x in ($env_of)(s, 'pre')['services'])" "the fix deployed"
echo "a new commit to notifier ended the pin and deployed"
"$BERTH" history --config "$CONFIG" --env pre --service notifier --limit 5

step "pause one service, then sync now"
"$BERTH" pause ledger --config "$CONFIG" --env pre --reason "incident 42"
wait_status "any(x['name'] == 'ledger' and x['health'] == 'Paused' for x in ($env_of)(s, 'pre')['services'])" "ledger paused"
status | grep -E "^(ENV|pre +ledger)"
"$BERTH" resume ledger --config "$CONFIG" --env pre
"$BERTH" sync --config "$CONFIG" --env pre --service ledger
wait_status "any(x['name'] == 'ledger' and x['health'] == 'Healthy' for x in ($env_of)(s, 'pre')['services'])" "ledger resumed"

step "SIGHUP: the config is read again (systemctl reload berth)"
kill -HUP "$DAEMON_PID"
for _ in $(seq 1 50); do grep -q "configuration reloaded" "$WORK/berth.log" && break; sleep 0.1; done
grep -q "configuration reloaded" "$WORK/berth.log"
echo "reloaded, still running: /healthz $(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")"

step "where to look"
echo "  $URL/status    JSON of every environment and service"
echo "  $URL/metrics   OpenMetrics (Prometheus); for example:"
curl -fsS "$URL/metrics" | grep -E '^berth_(source_info|reconcile_total\{env="prod")' | head -n 6 | sed 's/^/    /'
echo "  $URL/readyz    200 once every environment has synced: $(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")"

step "SIGTERM: berth drains and exits"
kill -TERM "$DAEMON_PID"
set +e
wait "$DAEMON_PID"
CODE=$?
set -e
DAEMON_PID=""
echo "berth daemon exited with status $CODE"
[ "$CODE" -eq 0 ]
step "demo done in $((SECONDS - t0)) s"
