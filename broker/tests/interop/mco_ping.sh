#!/usr/bin/env bash
# Real MCollective (Debian mcollective 2.12.5 + mcollective-client) against a STOMP broker.
#
#   mco_ping.sh --host 127.0.0.1 --port 61613 --user mcollective --password marionette --nodes 3 [--keep]
#               [--ssl-ca CA.pem --ssl-cert CERT.pem --ssl-key KEY.pem]
#               [--connector rabbitmq --vhost /mcollective]
#
# With --ssl-*, every node and the client connect over TLS with MCollective's
# plugin.activemq.pool.1.ssl = 1 and .ssl.ca/.ssl.cert/.ssl.key (verified TLS).
#
# With --connector rabbitmq, every node and the client use MCollective's rabbitmq connector
# (plugin.rabbitmq.*, CONNECT host = --vhost, default `/`): broadcasts to
# /exchange/mcollective_broadcast/<agent>, directed requests to
# /exchange/mcollective_directed/<identity>, replies through reply-to:/temp-queue/…; the
# broker needs that vhost with MCollective's two exchanges.
#
# Starts N mcollectived daemons (identities node-01..node-NN, activemq connector by default,
# psk security, yaml facts) in the foreground as background jobs of this script, then:
#   1. `mco ping` until all N nodes answer (retries for up to ~30 s while the nodes subscribe);
#      asserts exactly N distinct replies, all from our nodes;
#   2. `mco rpc rpcutil ping -I node-01 -I node-02` (directed: one SEND per node to
#      /queue/mcollective.nodes, each node reads it through its `mc_identity = '<id>'` selector;
#      with rabbitmq, one SEND per node to its key on the direct exchange);
#      asserts that both answered and nobody else did.
# Every daemon it started is stopped on exit (trap EXIT), by the pids it recorded; it never
# touches other processes. Work files go to a fresh temp dir, removed on exit unless --keep.
# Exit status: 0 pass, 1 fail, 2 usage.
set -euo pipefail

HOST=127.0.0.1 PORT="" USER_NAME="" PASSWORD="" NODES=3 KEEP=0 SSL_CA="" SSL_CERT="" SSL_KEY=""
CONNECTOR=activemq VHOST=/
usage() {
    echo "usage: $0 --port PORT [--host HOST] [--user USER] [--password PASSWORD] [--nodes N] [--keep]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case "$1" in
        --host) HOST=${2:?}; shift 2 ;;
        --port) PORT=${2:?}; shift 2 ;;
        --user | --login) USER_NAME=${2?}; shift 2 ;;
        --password | --passcode) PASSWORD=${2?}; shift 2 ;;
        --nodes) NODES=${2:?}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --ssl-ca) SSL_CA=${2:?}; shift 2 ;;
        --ssl-cert) SSL_CERT=${2:?}; shift 2 ;;
        --ssl-key) SSL_KEY=${2:?}; shift 2 ;;
        --connector) CONNECTOR=${2:?}; shift 2 ;;
        --vhost) VHOST=${2:?}; shift 2 ;;
        -h | --help) usage ;;
        *) echo "unknown argument: $1" >&2; usage ;;
    esac
done
[ -n "$PORT" ] || usage
case "$CONNECTOR" in activemq | rabbitmq) ;; *) echo "--connector must be activemq or rabbitmq" >&2; exit 2 ;; esac
[[ "$NODES" =~ ^[0-9]+$ ]] && [ "$NODES" -ge 2 ] && [ "$NODES" -le 999 ] || {
    echo "--nodes must be 2..999 (the directed request targets node-01 and node-02)" >&2
    exit 2
}

# Debian's ruby, whatever else is on PATH: the mcollective libraries live in its vendor_ruby.
RUBY=/usr/bin/ruby
for f in "$RUBY" /usr/sbin/mcollectived /usr/bin/mco; do
    [ -x "$f" ] || { echo "FAIL: $f missing: run scripts/install-test-deps" >&2; exit 1; }
done

START=$(date +%s)
log() { echo "[mco $(($(date +%s) - START))s] $*"; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/stampede-mco.XXXXXX")
PIDS=()
cleanup() {
    local status=$?
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            echo "mcollectived pid $pid ignored TERM; sending KILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        for f in "$WORK"/node-*.log; do
            [ -f "$f" ] || continue
            echo "---- tail of $f" >&2
            tail -n 15 "$f" >&2
        done
    fi
    if [ "$KEEP" -eq 1 ]; then
        echo "work files kept in $WORK" >&2
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "FAIL: $*"
    exit 1
}

PSK="stampede-interop-$RANDOM$RANDOM"

common_cfg() {
    cat <<EOF
main_collective = mcollective
collectives = mcollective
libdir = /usr/share/mcollective/plugins
securityprovider = psk
plugin.psk = $PSK
connector = $CONNECTOR
plugin.$CONNECTOR.pool.size = 1
plugin.$CONNECTOR.pool.1.host = $HOST
plugin.$CONNECTOR.pool.1.port = $PORT
plugin.$CONNECTOR.pool.1.user = $USER_NAME
plugin.$CONNECTOR.pool.1.password = $PASSWORD
plugin.$CONNECTOR.initial_reconnect_delay = 0.1
plugin.$CONNECTOR.max_reconnect_delay = 2.0
direct_addressing = 1
factsource = yaml
plugin.yaml = $WORK/facts.yaml
EOF
    if [ "$CONNECTOR" = rabbitmq ]; then
        echo "plugin.rabbitmq.vhost = $VHOST"
    fi
    if [ -n "$SSL_CA" ]; then
        cat <<EOF
plugin.activemq.pool.1.ssl = 1
plugin.activemq.pool.1.ssl.ca = $SSL_CA
plugin.activemq.pool.1.ssl.cert = $SSL_CERT
plugin.activemq.pool.1.ssl.key = $SSL_KEY
EOF
    fi
}

printf 'interop: stampede\nrole: test-node\n' >"$WORK/facts.yaml"

log "starting $NODES mcollectived ($CONNECTOR connector) against $HOST:$PORT (work dir $WORK)"
for i in $(seq 1 "$NODES"); do
    id=$(printf 'node-%02d' "$i")
    {
        common_cfg
        echo "identity = $id"
        echo "daemonize = 0"
        echo "logfile = $WORK/$id.log"
        echo "loglevel = debug"
    } >"$WORK/server-$id.cfg"
    "$RUBY" /usr/sbin/mcollectived --config "$WORK/server-$id.cfg" --no-daemonize \
        >"$WORK/$id.out" 2>&1 &
    PIDS+=("$!")
    echo "$!" >"$WORK/$id.pid"
done

{
    common_cfg
    echo "identity = mco-client"
    echo "logger_type = console"
    echo "loglevel = warn"
} >"$WORK/client.cfg"

# Wait until every node has logged its three subscriptions (the directed one: the selector
# subscription on /queue/mcollective.nodes or its key on the direct exchange; and the
# discovery + rpcutil agents' broadcasts), so the first ping counts.
subscribed() {
    local n
    if [ "$CONNECTOR" = rabbitmq ]; then
        n=$(grep -c -e "Subscribing to /exchange/mcollective_directed/$2 " \
            -e "Subscribing to /exchange/mcollective_broadcast/discovery " \
            -e "Subscribing to /exchange/mcollective_broadcast/rpcutil " "$1" 2>/dev/null || true)
    else
        n=$(grep -c -e "Subscribing to /queue/mcollective.nodes" \
            -e "Subscribing to /topic/mcollective.discovery.agent" \
            -e "Subscribing to /topic/mcollective.rpcutil.agent" "$1" 2>/dev/null || true)
    fi
    [ "${n:-0}" -ge 3 ]
}
# Each mcollectived takes a fraction of a CPU second to start: more time for large fleets.
deadline=$(($(date +%s) + 30 + NODES / 4))
for i in $(seq 1 "$NODES"); do
    id=$(printf 'node-%02d' "$i")
    until subscribed "$WORK/$id.log" "$id"; do
        kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null || fail "mcollectived $id exited early: $(tail -n 5 "$WORK/$id.out" "$WORK/$id.log" 2>/dev/null)"
        [ "$(date +%s)" -lt "$deadline" ] ||
            fail "$id did not subscribe within $((30 + NODES / 4)) s (is the broker accepting $USER_NAME on $HOST:$PORT?)"
        sleep 0.2
    done
done
log "all $NODES nodes connected and subscribed (pids ${PIDS[*]})"

want=$(for i in $(seq 1 "$NODES"); do printf 'node-%02d\n' "$i"; done | sort)

# 1. Broadcast: mco ping, retried until all N answer or ~30 s have passed.
deadline=$(($(date +%s) + 30))
attempt=0
while :; do
    attempt=$((attempt + 1))
    out=$(timeout 60 "$RUBY" /usr/bin/mco ping --connection-timeout 10 --config "$WORK/client.cfg" 2>&1) || true
    replies=$(printf '%s\n' "$out" | awk '$2 ~ /^time=/ {print $1}')
    distinct=$(printf '%s\n' "$replies" | sed '/^$/d' | sort -u)
    count=$(printf '%s\n' "$distinct" | sed '/^$/d' | wc -l)
    total=$(printf '%s\n' "$replies" | sed '/^$/d' | wc -l)
    log "mco ping attempt $attempt: $count distinct of $NODES ($total replies)"
    if [ "$count" -ge "$NODES" ] || [ "$(date +%s)" -ge "$deadline" ]; then
        break
    fi
    sleep 1
done
printf '%s\n' "$out"
[ "$distinct" = "$want" ] || fail "mco ping: want replies from exactly $(echo $want), got: $(echo $distinct)"
[ "$total" -eq "$NODES" ] || fail "mco ping: $total replies for $NODES nodes (duplicates?)"
log "mco ping: all $NODES nodes answered once"

# 2. Directed request through /queue/mcollective.nodes + mc_identity selectors.
out=$(timeout 60 "$RUBY" /usr/bin/mco rpc rpcutil ping -I node-01 -I node-02 --connection-timeout 10 \
    --config "$WORK/client.cfg" --json 2>&1) ||
    fail "mco rpc exited non-zero: $out"
printf '%s\n' "$out"
senders=$(printf '%s\n' "$out" | "$RUBY" -rjson -e '
    text = STDIN.read
    json = text[text.index("[")..] rescue abort("no JSON array in mco output")
    JSON.parse(json).each { |r| puts "#{r["sender"]} #{r["statuscode"]}" }
') || fail "cannot parse mco rpc --json output"
[ "$(printf '%s\n' "$senders" | sort)" = "$(printf 'node-01 0\nnode-02 0')" ] ||
    fail "mco rpc rpcutil ping -I node-01 -I node-02: want OK replies from node-01 and node-02 only, got: $(echo $senders)"
# Only the two addressed nodes may have seen the request at all.
for i in $(seq 3 "$NODES"); do
    id=$(printf 'node-%02d' "$i")
    if grep -q "for agent 'rpcutil'" "$WORK/$id.log"; then
        fail "$id received the rpcutil request meant for node-01 and node-02 (selector ignored?)"
    fi
done
log "directed rpcutil ping: node-01 and node-02 answered, no other node saw the request"

for i in $(seq 1 "$NODES"); do
    id=$(printf 'node-%02d' "$i")
    kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null || fail "mcollectived $id died during the test"
done
echo "PASS mco_ping ($NODES nodes, $(($(date +%s) - START))s)"
