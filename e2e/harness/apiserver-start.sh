#!/usr/bin/env bash
# Starts etcd + kube-apiserver (from apiserver-build.sh) on 127.0.0.1 and prints the kubeconfig path.
#   usage: apiserver-start.sh BIN_DIR RUN_DIR
#   env:   APISERVER_PORT (default 16443), ETCD_PORT (default 12379; ETCD_PORT+1 is the peer port)
#          for a real node (node-start.sh): APISERVER_BIND (127.0.0.1; the node's bridge address, so
#          that pods reach it; the kubeconfig names it), APISERVER_SANS (extra subjectAltNames of the serving certificate,
#          e.g. IP:10.88.0.1), SERVICE_ACCOUNTS=1 (ServiceAccount admission on: pods get tokens),
#          KUBELET_CLIENT_CERT=1 (a client certificate the API server presents to kubelets for
#          logs/exec), EXTRA_APISERVER_FLAGS (appended, word-split)
# Admin credentials: a static bearer token in group system:masters; RBAC authorization. No kubelet,
# scheduler or controller-manager: Pods are admitted (webhooks are called) and stay Pending.
# ServiceAccount admission is off unless SERVICE_ACCOUNTS=1 (nothing creates default ServiceAccounts without a
# controller-manager), as in envtest.
# Ready in ~4-6 s. Stop with apiserver-stop.sh RUN_DIR.
set -euo pipefail
BIN=$(realpath "$1"); RUN=$(realpath -m "$2")
APISERVER_PORT=${APISERVER_PORT:-16443}; ETCD_PORT=${ETCD_PORT:-12379}; ADDR=${APISERVER_BIND:-127.0.0.1}
C=$RUN/certs; mkdir -p "$C" "$RUN/etcd-data"
if [ ! -f "$C/ca.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mcp-guard-test-ca" \
    -keyout "$C/ca.key" -out "$C/ca.crt" 2>/dev/null
  printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost%s\n' "${APISERVER_SANS:+,$APISERVER_SANS}" > "$C/server.ext"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "$C/apiserver.key" -out "$C/apiserver.csr" 2>/dev/null
  openssl x509 -req -in "$C/apiserver.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial -days 3650 \
    -extfile "$C/server.ext" -out "$C/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$C/sa.key" 2048 2>/dev/null
  openssl rsa -in "$C/sa.key" -pubout -out "$C/sa.pub" 2>/dev/null
  echo "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'),admin,admin-uid,system:masters" > "$C/tokens.csv"
fi
TOKEN=$(cut -d, -f1 "$C/tokens.csv")
FLAGS=()
if [ "${KUBELET_CLIENT_CERT:-0}" = 1 ]; then
  if [ ! -f "$C/kubelet-client.crt" ]; then
    printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > "$C/client.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout "$C/kubelet-client.key" -out "$C/kubelet-client.csr" 2>/dev/null
    openssl x509 -req -in "$C/kubelet-client.csr" -CA "$C/ca.crt" -CAkey "$C/ca.key" -CAcreateserial -days 3650 \
      -extfile "$C/client.ext" -out "$C/kubelet-client.crt" 2>/dev/null
  fi
  FLAGS+=(--kubelet-client-certificate="$C/kubelet-client.crt" --kubelet-client-key="$C/kubelet-client.key")
fi
[ "${SERVICE_ACCOUNTS:-0}" = 1 ] || FLAGS+=(--disable-admission-plugins=ServiceAccount)
"$BIN/etcd" --name local --data-dir "$RUN/etcd-data" --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" \
  --initial-cluster "local=http://127.0.0.1:$((ETCD_PORT+1))" > "$RUN/etcd.log" 2>&1 &
echo $! > "$RUN/etcd.pid"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
"$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$ADDR" --advertise-address=127.0.0.1 --secure-port="$APISERVER_PORT" --insecure-port=0 \
  --tls-cert-file="$C/apiserver.crt" --tls-private-key-file="$C/apiserver.key" --client-ca-file="$C/ca.crt" \
  --service-account-key-file="$C/sa.pub" --service-account-signing-key-file="$C/sa.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --token-auth-file="$C/tokens.csv" --authorization-mode=RBAC \
  --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true \
  --endpoint-reconciler-type=none \
  --cert-dir="$C/apiserver-certdir" "${FLAGS[@]}" ${EXTRA_APISERVER_FLAGS:-} > "$RUN/kube-apiserver.log" 2>&1 &
echo $! > "$RUN/kube-apiserver.pid"
cat > "$RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://$ADDR:$APISERVER_PORT", certificate-authority: "$C/ca.crt"}}]
users: [{name: admin, user: {token: "$TOKEN"}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
KC
for _ in $(seq 600); do
  [ "$(curl -s --cacert "$C/ca.crt" -H "Authorization: Bearer $TOKEN" "https://$ADDR:$APISERVER_PORT/readyz")" = ok ] \
    && { echo "$RUN/kubeconfig"; exit 0; }
  kill -0 "$(cat "$RUN/kube-apiserver.pid")" 2>/dev/null || break
  sleep 0.1
done
echo "kube-apiserver did not become ready; see $RUN/kube-apiserver.log" >&2
exit 1
