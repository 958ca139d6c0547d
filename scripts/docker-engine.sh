#!/usr/bin/env bash
# Install what the image tests need from Debian's packages (a Docker engine, mmdebstrap and
# docker-compose):
# as root with apt-get; otherwise print the hint. The tests start and stop dockerd
# themselves, on a private socket (tests/deploy/test_image.py).
set -euo pipefail
if command -v dockerd >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 \
    && command -v docker-compose >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io mmdebstrap docker-compose >/dev/null
else
    echo "image tests need Debian's docker.io, mmdebstrap and docker-compose: sudo apt-get install docker.io mmdebstrap docker-compose"
fi
