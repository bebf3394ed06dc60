#!/usr/bin/env bash
# Makes a private CA and certificates signed by it, with openssl, for mutual
# TLS between the pool's processes: the tests make theirs at test time, and
# a dev cluster can use the same (production: your own CA or cert-manager).
#   scripts/make_certs.sh DIR ca                 DIR/ca.pem, DIR/ca.key
#   scripts/make_certs.sh DIR cert NAME [CN]     DIR/NAME.pem, DIR/NAME.key,
#       signed by DIR/ca, valid 30 days, for the names localhost,
#       maskedkd.pool and 127.0.0.1 (server and client use)
#   scripts/make_certs.sh DIR role ROLE NAME     DIR/NAME.pem, DIR/NAME.key as
#       `cert`, carrying the pool role ROLE (teacher, job, operator) as the
#       URI SAN spiffe://$MKD_TRUST_DOMAIN/maskedkd/ROLE/NAME (trust domain
#       maskedkd.pool by default); a job's NAME is its job id
#   scripts/make_certs.sh DIR expired NAME       the same, valid only in 2020
# Keys are EC P-256: fast to make, accepted by gRPC's TLS.
set -euo pipefail
dir="$1"
what="$2"
mkdir -p "$dir"
cd "$dir"
san="subjectAltName=DNS:localhost,DNS:maskedkd.pool,IP:127.0.0.1"
if [[ "$what" == role ]]; then
  case "${3:-}" in
    teacher | job | operator) ;;
    *) echo "make_certs.sh: role must be teacher, job or operator, got '${3:-}'" >&2; exit 2 ;;
  esac
  san="$san,URI:spiffe://${MKD_TRUST_DOMAIN:-maskedkd.pool}/maskedkd/$3/$4"
  what=cert
  set -- "$1" cert "$4"
fi
ext="keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
basicConstraints=critical,CA:FALSE
$san"

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

case "$what" in
  ca)
    new_key ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=maskedkd test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
      -out ca.pem 2>/dev/null
    ;;
  cert)
    name="$3"
    cn="${4:-$name}"
    new_key "$name.key.tmp"
    openssl req -new -key "$name.key.tmp" -subj "/CN=$cn" -out "$name.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -sha256 \
      -days 30 -extfile "$name.ext" -out "$name.pem.tmp" 2>/dev/null
    # Renamed into place, key first: a process watching the files (rotation)
    # never reads a half-written one.
    mv "$name.key.tmp" "$name.key"
    mv "$name.pem.tmp" "$name.pem"
    rm -f "$name.csr" "$name.ext"
    ;;
  expired)
    # `openssl x509` (3.0) cannot backdate; `openssl ca` can, with a
    # throwaway database.
    name="$3"
    new_key "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$name" -out "$name.csr" 2>/dev/null
    rm -rf ca_db && mkdir ca_db && : >ca_db/index.txt && echo 1000 >ca_db/serial
    cat >ca_db/ca.cnf <<EOF
[ca]
default_ca = mkd
[mkd]
database = ca_db/index.txt
new_certs_dir = ca_db
serial = ca_db/serial
default_md = sha256
policy = any
copy_extensions = none
x509_extensions = ext
[any]
commonName = supplied
[ext]
$ext
EOF
    openssl ca -batch -config ca_db/ca.cnf -cert ca.pem -keyfile ca.key -in "$name.csr" \
      -startdate 200101000000Z -enddate 200102000000Z -notext -out "$name.pem" 2>/dev/null
    rm -rf ca_db "$name.csr"
    ;;
  *)
    echo "usage: scripts/make_certs.sh DIR ca | cert NAME [CN] | role ROLE NAME | expired NAME" >&2
    exit 2
    ;;
esac
