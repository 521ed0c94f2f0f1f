#!/usr/bin/env bash
# Generates a TEST certificate authority and certificates for pdserve's internal mutual TLS
# (router <-> pd-prefill/pd-decode gRPC). NOT for production: keys are unencrypted, lifetimes
# are short, one certificate is shared by every process of a role.
#
#   scripts/gen-test-ca.sh OUT_DIR [NAME...]
#
# Writes into OUT_DIR (created, mode 700):
#   ca.pem / ca-key.pem              the test CA (EC P-256, 30 days)
#   server.pem / server-key.pem      for pd-prefill/pd-decode (instance `tls`)
#   client.pem / client-key.pem      for pd-router (router.internal_tls)
# Server and client certificates carry subjectAltName DNS:localhost, IP:127.0.0.1, IP:::1 and
# DNS:NAME for every extra NAME given (host names the router dials, e.g. Kubernetes Services),
# and the serverAuth/clientAuth extended key usages (both, so one pair can serve either side).
# Needs openssl (Debian package `openssl`, installed by scripts/setup.sh).
set -euo pipefail

if [ $# -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  exit $([ $# -lt 1 ] && echo 2 || echo 0)
fi
out=$1
shift
command -v openssl >/dev/null || { echo "gen-test-ca.sh: openssl not found (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$out"
chmod 700 "$out"
cd "$out"
umask 077

san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "$@"; do san="$san,DNS:$n"; done

openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem 2>/dev/null
openssl req -x509 -new -key ca-key.pem -sha256 -days 30 -subj "/CN=pdserve test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem 2>/dev/null

leaf() {  # leaf NAME CN
  openssl ecparam -name prime256v1 -genkey -noout -out "$1-key.pem.ec" 2>/dev/null
  # PKCS#8 ("BEGIN PRIVATE KEY"): what gRPC and pdserve's loader expect.
  openssl pkcs8 -topk8 -nocrypt -in "$1-key.pem.ec" -out "$1-key.pem"
  rm -f "$1-key.pem.ec"
  openssl req -new -key "$1-key.pem" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  printf '%s\n' "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=$san" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 \
    -days 30 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
leaf server "pdserve daemon"
leaf client "pdserve router"
rm -f ca.srl
chmod 600 ./*-key.pem
chmod 644 ca.pem server.pem client.pem
openssl verify -CAfile ca.pem server.pem client.pem >/dev/null
echo "gen-test-ca.sh: wrote $(pwd)/{ca,server,client}.pem and their -key.pem"
