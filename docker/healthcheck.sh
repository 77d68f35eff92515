#!/bin/bash
# handoff-healthcheck [PATH] [PORT] [HOST]: exit 0 when Handoff's admin listener answers PATH with 200.
# Used by the image's HEALTHCHECK and the chart's exec probes. Needs only bash (/dev/tcp), no curl.
set -u
path="${1:-/healthz}"
port="${2:-9901}"
host="${3:-127.0.0.1}"
exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.1\r\nHost: %s:%s\r\nConnection: close\r\n\r\n' "$path" "$host" "$port" >&3
IFS= read -r -t 3 status <&3 || { echo "no answer from $host:$port$path" >&2; exit 1; }
status="${status%$'\r'}"
case "$status" in
  "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "$host:$port$path: $status" >&2
exit 1
