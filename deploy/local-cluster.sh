#!/usr/bin/env bash
# A local three-member cluster on 127.0.0.1 (what `make cluster` runs):
#   n1 client 2379, peer 2380, gossip 7946
#   n2 client 2389, peer 2390, gossip 7947
#   n3 client 2399, peer 2400, gossip 7948
# Data under ./cluster.etcdsql/. Set MYSQL_DSN (user:pass@tcp(host:3306)/db)
# to make a MySQL/MariaDB database the shared system of record.
# Ctrl-C stops the three members.
set -euo pipefail
bin=${ETCDSQL_BIN:-bin/etcdsql}
dir=${CLUSTER_DIR:-cluster.etcdsql}
join=127.0.0.1:7946,127.0.0.1:7947,127.0.0.1:7948
mkdir -p "$dir"
# The members authenticate each other (and encrypt gossip) with this key.
key="$dir/cluster.key"
[ -s "$key" ] || (umask 077; head -c 32 /dev/urandom | base64 > "$key")
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  off=$(( (i - 1) * 10 ))
  args=(--name "n$i" --data-dir "$dir/n$i"
    --listen-client-urls "http://127.0.0.1:$((2379 + off))"
    --advertise-client-urls "http://127.0.0.1:$((2379 + off))"
    --listen-peer-urls "http://127.0.0.1:$((2380 + off))"
    --gossip-addr "127.0.0.1:$((7945 + i))" --join "$join"
    --bootstrap-expect 3 --cluster-key-file "$key" --log-format text)
  if [ -n "${MYSQL_DSN:-}" ]; then
    args+=(--mysql-dsn "$MYSQL_DSN")
  fi
  "$bin" "${args[@]}" > >(sed -u "s/^/n$i | /") 2>&1 &
  pids+=($!)
done
echo "cluster: endpoints http://127.0.0.1:2379,http://127.0.0.1:2389,http://127.0.0.1:2399 (Ctrl-C stops it)" >&2
wait
