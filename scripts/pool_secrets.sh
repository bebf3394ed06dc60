#!/usr/bin/env bash
# Makes a pool's secret and its tokens, for the local cluster and the demo
# (docs/security.md: roles and tokens).
#   scripts/pool_secrets.sh DIR MKD JOB...
# DIR/pool.secret     the pool secret (48 random bytes, base64), kept if it
#                     exists: restarting the cluster keeps every token valid
# DIR/JOB.token       a job token for each JOB, valid 30 days
# DIR/operator.token  an operator's token (mkd status/drain --token-file)
# MKD is the `mkd` command to mint with (e.g. build/bin/mkd, or `docker run
# ... mkd`). Files are readable by every user (0644) so containers running
# as another uid can read their mount; DIR itself is 0700.
set -euo pipefail
dir="$1"
mkd="$2"
shift 2
mkdir -p "$dir"
chmod 700 "$dir"
if [[ ! -s "$dir/pool.secret" ]]; then
  head -c 48 /dev/urandom | base64 >"$dir/pool.secret.tmp"
  mv "$dir/pool.secret.tmp" "$dir/pool.secret"
fi
mint() {  # role id file
  $mkd token --secret-file /dev/stdin --role "$1" --id "$2" --ttl 30d <"$dir/pool.secret" >"$3.tmp"
  mv "$3.tmp" "$3"
}
for job in "$@"; do mint job "$job" "$dir/$job.token"; done
mint operator operator "$dir/operator.token"
chmod 644 "$dir"/*
