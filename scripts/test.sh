#!/usr/bin/env bash
# berth's test command (README.md): set-up, then every test. Needs no AWS and no network
# but the package registries: AWS is a moto server on 127.0.0.1 that the tests start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
step "cargo test --all-targets --locked"
test_start=$SECONDS
cargo test --all-targets --locked
echo "tests took $((SECONDS - test_start)) s"

step "promtool: deploy/observability/berth-rules.yaml"
promtool check rules deploy/observability/berth-rules.yaml
promtool test rules deploy/observability/berth-rules.test.yaml
step "grafana dashboard is valid JSON"
python3 -m json.tool deploy/observability/grafana-dashboard.json >/dev/null
echo "deploy/observability/grafana-dashboard.json ok"
