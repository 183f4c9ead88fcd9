#!/usr/bin/env bash
# Starts a local S3-compatible server (moto) for the object-store tests.
#
#   source .ci/s3-server.sh     # exports RESCALE_S3_ENDPOINT, RESCALE_S3_BUCKET, RESCALE_S3_PID
#   bash .ci/s3-server.sh       # same, prints the exports (the server keeps running)
#
# Installs `moto[server]` from PyPI (quietly) if it is missing, starts it in the
# background on a free loopback port, waits until it answers and creates the
# bucket. Stop it with: kill "$RESCALE_S3_PID".

_rescale_s3_start() {
    local py bucket port log pid i
    py="$(command -v python3 || command -v python)" || {
        echo "s3-server: python3 is needed to run moto" >&2
        return 1
    }
    if ! "$py" -c 'import moto.server, flask' >/dev/null 2>&1; then
        echo "s3-server: installing moto[server] with pip" >&2
        "$py" -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6' >&2 || return 1
    fi
    bucket="${RESCALE_S3_BUCKET:-rescale-test}"
    port="$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    log="${TMPDIR:-/tmp}/rescale-moto-$port.log"
    "$py" -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    pid=$!
    # Wait until it answers (up to ~30 s), then create the bucket.
    for i in $(seq 1 150); do
        if "$py" - "$port" "$bucket" <<'PY' >/dev/null 2>&1
import sys, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
req = urllib.request.Request(f"http://127.0.0.1:{port}/{bucket}", method="PUT")
urllib.request.urlopen(req, timeout=2).read()
PY
        then
            export RESCALE_S3_ENDPOINT="http://127.0.0.1:$port"
            export RESCALE_S3_BUCKET="$bucket"
            export RESCALE_S3_PID="$pid"
            echo "s3-server: moto (pid $pid) on $RESCALE_S3_ENDPOINT, bucket $bucket, log $log" >&2
            echo "export RESCALE_S3_ENDPOINT=$RESCALE_S3_ENDPOINT RESCALE_S3_BUCKET=$RESCALE_S3_BUCKET RESCALE_S3_PID=$RESCALE_S3_PID"
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "s3-server: moto exited; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "s3-server: moto did not answer on port $port; its log:" >&2
    cat "$log" >&2
    kill "$pid" 2>/dev/null
    return 1
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    _rescale_s3_start
else
    _rescale_s3_start
fi
