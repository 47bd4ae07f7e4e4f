#!/usr/bin/env bash
# Writes a registry with nothing but psql and openssl, the way operators of the original gateway do,
# so you can check that agent-gateway honours such rows byte for byte.
#
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/ag_interop DEST=127.0.0.1:18080 \
#     examples/registry-with-psql-and-openssl.sh OUT_DIR
#
# OUT_DIR receives: ca.pem, server.pem/server-key.pem (for the gateway), agent.pem/agent-key.pem
# (identity "agent-alpha"), principal.pem, perm.txt (the signed bytes) and perm.sig.
# The database must exist and be empty or migrated; this script applies migrations/*.sql with psql.
set -euo pipefail
: "${DATABASE_URL:?set DATABASE_URL to the registry database}"
: "${DEST:?set DEST to the normalized destination to permit, e.g. 127.0.0.1:18080}"
out=${1:?usage: $0 OUT_DIR}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out" && cd "$out"

for f in "$here"/migrations/*.sql; do psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$f"; done

ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca-key.pem -out ca.pem -subj /CN=interop-ca -days 2 2>/dev/null
openssl req "${ec[@]}" -keyout server-key.pem -out server.csr -subj /CN=localhost 2>/dev/null
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out server.pem -days 2 \
  -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1') 2>/dev/null
# The identity rides in the agent certificate as one DER UTF8String.
openssl req -x509 "${ec[@]}" -keyout agent-key.pem -out agent.pem -subj /CN=agent-alpha -days 2 \
  -addext '1.3.6.1.4.1.57264.1.1=ASN1:UTF8String:agent-alpha' 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out principal.pem

hex() { od -An -v -tx1 "$1" | tr -d ' \n'; }
openssl pkey -in principal.pem -pubout -outform DER -out principal.spki.der
openssl x509 -in agent.pem -pubkey -noout | openssl pkey -pubin -outform DER -out agent.spki.der
principal_hex=$(hex principal.spki.der)
agent_hex=$(hex agent.spki.der)
nb=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M:%S.000000Z)
na=$(date -u -d '+7 days' +%Y-%m-%dT%H:%M:%S.000000Z)

psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" <<SQL
INSERT INTO principal_signing_keys (key_id, algorithm, public_key_spki_der, not_before, not_after)
  VALUES ('org-alice', 'ecdsa_p256_sha256', '\\x$principal_hex', now() - interval '1 day', now() + interval '30 days');
INSERT INTO principal_key_permissions (signing_key_id, destination, not_before, not_after)
  VALUES ('org-alice', '$DEST', now() - interval '1 day', now() + interval '30 days');
SQL

printf 'agent-gateway-permission-v1\npermission_id=perm-interop-1\nsigning_key_id=org-alice\nsubject_identity=agent-alpha\nsubject_public_key_spki_der=%s\ndestination=%s\nnot_before=%s\nnot_after=%s\n' \
  "$agent_hex" "$DEST" "$nb" "$na" >perm.txt
openssl dgst -sha256 -sign principal.pem -out perm.sig perm.txt

psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -c "INSERT INTO permission_registry
  (permission_id, signing_key_id, subject_identity, subject_public_key_spki_der, destination, not_before, not_after, signature)
  VALUES ('perm-interop-1', 'org-alice', 'agent-alpha', '\\x$agent_hex', '$DEST', '$nb', '$na', '\\x$(hex perm.sig)')"
echo "registry written; gateway cert: $out/server.pem, agent: $out/agent.pem + $out/agent-key.pem, CA: $out/ca.pem"
