#!/usr/bin/env bash
# Coverage-guided fuzzing of berth's parsers on stable Rust: cargo-fuzz (libFuzzer) without
# a sanitizer (`-s none`; the sanitizers need nightly). Each target runs SECONDS (default
# 600); the seeds come from the test fixtures. Findings land in fuzz/artifacts/<target>/.
#
#   bash fuzz/run.sh [SECONDS]
#
# Targets: spec (a service folder: service.yaml + pre/config.yaml, loaded and resolved),
# template (parse and expand), agent_config (berth.yaml). docs/fuzzing.md has the results.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-600}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR="${BERTH_FUZZ_TARGET_DIR:-$HOME/.cache/berth/fuzz-target}"
fixtures=../tests/fixtures
seeds() {
  local t=$1 dir=corpus/$1
  mkdir -p "$dir"
  case $t in
    spec)
      for s in "$fixtures"/monorepo/services/*/deploy/service.yaml "$fixtures"/invalid/*/services/*/deploy/service.yaml; do
        [ -f "$s" ] || continue
        env="$(dirname "$s")/pre/config.yaml"
        { cat "$s"; printf '\0'; [ -f "$env" ] && cat "$env"; } > "$dir/seed-$(echo "$s" | md5sum | cut -c1-12)"
      done ;;
    template)
      grep -rhoE "\{\{[^}]*\}\}" "$fixtures" | sort -u | while read -r line; do
        printf 'x-%s-y' "$line" > "$dir/seed-$(echo "$line" | md5sum | cut -c1-12)"
      done ;;
    agent_config)
      cp "$fixtures"/berth.yaml "$dir/seed-berth" ;;
  esac
}
cargo fuzz build -s none
for t in spec template agent_config; do
  seeds "$t"
  echo "==> $t for ${secs}s"
  cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | tee "/tmp/berth-fuzz-$t.log" | grep -E "^#[0-9]+.*(DONE|pulse)|stat::|ERROR|SUMMARY|crash-|timeout-|oom-" | tail -15
done
