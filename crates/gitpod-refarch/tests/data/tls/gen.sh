#!/bin/sh
# Test certificates for the bring-your-own TLS checks (made once with OpenSSL 3.0 and
# committed; the tests inject "now", so their validity dates do not matter). No real
# secret: every key here exists only for these tests.
set -eu
cd "$(dirname "$0")"
D=gitpod.example.com
ext() { printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$1" > ext.cnf; }
# A test CA.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -subj "/CN=gitpod-refarch test CA" -days 3650 -out ca.crt 2>/dev/null
sign() { # sign <key> <csr-cn> <san> <out> <days>
  openssl req -new -key "$1" -subj "/CN=$2" -out req.csr
  ext "$3"
  openssl x509 -req -in req.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days "$5" \
    -extfile ext.cnf -out "$4" 2>/dev/null
}
# The leaf's keys: P-256 in PKCS#8 and the same key in SEC1; an RSA key in PKCS#1; another key.
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key
openssl ec -in leaf.key -out leaf-sec1.key 2>/dev/null
openssl genrsa -traditional -out rsa.key 2048 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out other.key
# Covering DOMAIN, *.DOMAIN, *.ws.DOMAIN, as a chain (leaf, CA).
sign leaf.key $D "DNS:$D,DNS:*.$D,DNS:*.ws.$D" leaf.crt 3650
cat leaf.crt ca.crt > chain.pem
sign rsa.key $D "DNS:$D,DNS:*.$D,DNS:*.ws.$D" rsa.crt 3650
# A wildcard one level up covers DOMAIN itself.
sign leaf.key $D "DNS:*.example.com,DNS:*.$D,DNS:*.ws.$D" parent-wildcard.crt 3650
# Missing *.ws.DOMAIN.
sign leaf.key $D "DNS:$D,DNS:*.$D" no-ws.crt 3650
rm -f req.csr ext.cnf ca.srl
openssl x509 -in leaf.crt -noout -dates
