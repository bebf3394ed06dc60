#!/usr/bin/env bash
# The pool's Secrets, for a cluster without cert-manager (with it,
# components/cert-manager issues the certificates and this script's
# --insecure form makes the rest). Prints them as manifests:
#   deploy/k8s/make_secrets.sh DIR [--insecure] | kubectl apply -n NS -f -
# DIR keeps what the Secrets are made from, to mint job tokens later
# (mkd job manifest --pool-secret-file DIR/pool.secret) and to reach the
# pool as an operator (mkd status --token-file DIR/operator.token):
#   DIR/pool.secret, DIR/operator.token     scripts/pool_secrets.sh's
#   DIR/ca.pem, DIR/ca.key                  the pool's private CA
#   DIR/{coordinator,teacher,student}.pem, .key   its certificates
# The Secrets: maskedkd-pool (pool.secret) and, unless --insecure (the
# cpu-dev overlay's plaintext), maskedkd-coordinator-tls,
# maskedkd-teacher-tls and maskedkd-student-tls with tls.crt, tls.key and
# ca.crt, as cert-manager lays them out. The certificates are valid 30
# days: run it again to renew (the pool secret, and so every token, is
# kept); the processes re-read the files within tls.refresh_s.
# MKD names the mkd binary (default build/bin/mkd), KUBECTL kubectl.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${1:?usage: deploy/k8s/make_secrets.sh DIR [--insecure]}"
insecure=0
case "${2:-}" in
  "") ;;
  --insecure) insecure=1 ;;
  *) echo "make_secrets.sh: unknown flag '$2' (expected --insecure)" >&2; exit 2 ;;
esac
mkd="${MKD:-$root/build/bin/mkd}"
kubectl="${KUBECTL:-kubectl}"
[[ -x "$mkd" ]] || { echo "make_secrets.sh: no mkd at $mkd (build it, or set MKD)" >&2; exit 1; }
bash "$root/scripts/pool_secrets.sh" "$dir" "$mkd" >/dev/null
dir="$(cd "$dir" && pwd)"

# kubectl writes each Secret without contacting a cluster.
secret() { "$kubectl" create secret generic "$@" --dry-run=client -o yaml; }

secret maskedkd-pool --from-file=pool.secret="$dir/pool.secret"
((insecure)) && exit 0
certs="$root/scripts/make_certs.sh"
[[ -s "$dir/ca.pem" ]] || bash "$certs" "$dir" ca
bash "$certs" "$dir" cert coordinator mkd-coordinator
# The teacher role is what a student requires of the server it dials.
bash "$certs" "$dir" role teacher teacher
bash "$certs" "$dir" cert student mkd-student
for who in coordinator teacher student; do
  echo "---"
  secret "maskedkd-$who-tls" --from-file=tls.crt="$dir/$who.pem" \
    --from-file=tls.key="$dir/$who.key" --from-file=ca.crt="$dir/ca.pem"
done
