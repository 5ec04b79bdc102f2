# Finds PostgreSQL and Redis, or starts throwaway ones. Sourced by
# scripts/test.sh, dev.sh, bench.sh and chaos.sh; bash only.
#
# After `ensure_services`, DATABASE_URL and REDIS_URL point at servers that
# answer. With CONVEYOR_REDIS_CLUSTER=true, REDIS_URL names a Redis Cluster
# (its nodes' URLs, separated by commas): one given that answers, or a
# throwaway one started here (three masters, three replicas). A server this file started lives in a temporary directory and is
# stopped by `stop_services` (callers trap it on EXIT). Nothing is installed
# and nothing outside that directory is touched.

SERVICES_DIR=""
STARTED_PG_DATA=""
STARTED_PG_USER=""
STARTED_REDIS_PID=""
STARTED_CLUSTER_PIDS=()

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# host and port of a URL like scheme://user@host:port/db
url_host() { local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}; printf '%s' "${rest%%:*}"; }
url_port() {
  local rest=${1#*://}; rest=${rest#*@}; rest=${rest%%/*}
  if [[ $rest == *:* ]]; then printf '%s' "${rest##*:}"; else printf '%s' "$2"; fi
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# The lowest port the kernel hands out to outgoing connections. A port in
# that range can be taken by any client socket between our check and the
# server's bind (it happened to a cluster node once), so servers get ports
# below it.
ephemeral_low() {
  local low
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
  ((low > 11000)) || low=32768
  printf '%s' "$low"
}

# A port nothing listens on, from 10000 up to (not including) $1, by
# default the start of the ephemeral range.
free_port() {
  local below=${1:-$(ephemeral_low)} port
  for _ in $(seq 1 50); do
    port=$((10000 + RANDOM % (below - 10000)))
    port_open 127.0.0.1 "$port" || { printf '%s' "$port"; return 0; }
  done
  die "no free TCP port found on 127.0.0.1"
}

postgres_answers() {
  local url=$1
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -d "$url" -t 3
  else
    port_open "$(url_host "$url")" "$(url_port "$url" 5432)"
  fi
}

redis_answers() {
  local url=$1 host port reply
  host=$(url_host "$url"); port=$(url_port "$url" 6379)
  if command -v redis-cli >/dev/null 2>&1; then
    reply=$(timeout 3 redis-cli -u "$url" PING 2>/dev/null) && [[ $reply == PONG ]]
  else
    port_open "$host" "$port"
  fi
}

pg_bin() {
  local name=$1 dir
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin /usr/local/pgsql/bin /opt/homebrew/bin /usr/local/bin 2>/dev/null | sort -rV); do
    [[ -x $dir/$name ]] && { printf '%s' "$dir/$name"; return 0; }
  done
  return 1
}

ensure_services_dir() {
  [[ -n $SERVICES_DIR ]] || SERVICES_DIR=$(mktemp -d "${TMPDIR:-/tmp}/conveyor-services.XXXXXX")
  chmod 755 "$SERVICES_DIR"
}

start_postgres() {
  local initdb pg_ctl port data runas=()
  initdb=$(pg_bin initdb) && pg_ctl=$(pg_bin pg_ctl) || die "PostgreSQL is not reachable at DATABASE_URL and its server binaries (initdb, pg_ctl) are not installed.
  Install them, e.g.: Debian/Ubuntu: sudo apt-get install postgresql   macOS: brew install postgresql@16
  or point DATABASE_URL at a running server."
  ensure_services_dir
  port=$(free_port)
  data="$SERVICES_DIR/pg"
  mkdir -p "$data"
  # initdb and postgres refuse to run as root: run them as an ordinary user.
  if [[ $(id -u) == 0 ]]; then
    STARTED_PG_USER=postgres
    id -u postgres >/dev/null 2>&1 || STARTED_PG_USER=nobody
    chown "$STARTED_PG_USER" "$data"
    runas=(runuser -u "$STARTED_PG_USER" --)
  fi
  say "starting a throwaway PostgreSQL on 127.0.0.1:$port ($data)"
  "${runas[@]}" "$initdb" -D "$data" -U postgres --auth=trust --no-sync -E UTF8 >"$SERVICES_DIR/initdb.log" 2>&1 \
    || die "initdb failed; see $SERVICES_DIR/initdb.log"
  # Durability settings off: this server holds only test data.
  "${runas[@]}" "$pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || die "PostgreSQL did not start; see $data/server.log"
  STARTED_PG_DATA=$data
  export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
}

start_redis() {
  local server port
  server=$(command -v redis-server || command -v valkey-server) || die "Redis is not reachable at REDIS_URL and redis-server is not installed.
  Install it, e.g.: Debian/Ubuntu: sudo apt-get install redis-server   macOS: brew install redis
  or point REDIS_URL at a running server."
  ensure_services_dir
  port=$(free_port)
  say "starting a throwaway Redis on 127.0.0.1:$port"
  "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$SERVICES_DIR" --logfile "$SERVICES_DIR/redis.log" --daemonize no &
  STARTED_REDIS_PID=$!
  for _ in $(seq 1 100); do
    port_open 127.0.0.1 "$port" && break
    sleep 0.1
  done
  port_open 127.0.0.1 "$port" || die "Redis did not start; see $SERVICES_DIR/redis.log"
  export REDIS_URL="redis://127.0.0.1:$port"
}

# A cluster answers when its first listed node says its state is ok.
cluster_answers() {
  local seed=${1%%,*} cli
  cli=$(command -v redis-cli || command -v valkey-cli) \
    && timeout 3 "$cli" -u "$seed" CLUSTER INFO 2>/dev/null | grep -q '^cluster_state:ok'
}

# Uses DATABASE_URL / REDIS_URL (or the local defaults) when they answer;
# otherwise starts throwaway servers.
ensure_services() {
  export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  if postgres_answers "$DATABASE_URL"; then
    say "using PostgreSQL at $(url_host "$DATABASE_URL"):$(url_port "$DATABASE_URL" 5432)"
  else
    start_postgres
  fi
  if [[ ${CONVEYOR_REDIS_CLUSTER:-} == true ]]; then
    if [[ -n ${REDIS_URL:-} ]] && cluster_answers "$REDIS_URL"; then
      say "using the Redis Cluster at ${REDIS_URL%%,*} (and the nodes it names)"
    else
      [[ -z ${REDIS_URL:-} ]] || say "no Redis Cluster answers at REDIS_URL=$REDIS_URL"
      start_redis_cluster
      export REDIS_URL=$CLUSTER_URL
    fi
    return 0
  fi
  export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
  if redis_answers "$REDIS_URL"; then
    say "using Redis at $(url_host "$REDIS_URL"):$(url_port "$REDIS_URL" 6379)"
  else
    start_redis
  fi
}

stop_services() {
  stop_redis_cluster
  if [[ -n $STARTED_REDIS_PID ]]; then
    kill "$STARTED_REDIS_PID" 2>/dev/null; wait "$STARTED_REDIS_PID" 2>/dev/null
  fi
  if [[ -n $STARTED_PG_DATA ]]; then
    local runas=()
    [[ -n $STARTED_PG_USER ]] && runas=(runuser -u "$STARTED_PG_USER" --)
    "${runas[@]}" "$(pg_bin pg_ctl)" -D "$STARTED_PG_DATA" -m immediate stop >/dev/null 2>&1
  fi
  [[ -n $SERVICES_DIR ]] && rm -rf "$SERVICES_DIR"
  return 0
}

# Starts a throwaway Redis Cluster: three masters and three replicas on
# free ports, created with `redis-cli --cluster create`. Sets CLUSTER_URL
# to its nodes' URLs, separated by commas (what REDIS_URL takes with
# CONVEYOR_REDIS_CLUSTER=true).
start_redis_cluster() {
  local server cli dir port taken ports=() addrs=() urls=()
  server=$(command -v redis-server || command -v valkey-server) && cli=$(command -v redis-cli || command -v valkey-cli) \
    || die "a Redis Cluster run needs redis-server and redis-cli installed (Debian/Ubuntu: sudo apt-get install redis-server)"
  ensure_services_dir
  while ((${#ports[@]} < 6)); do
    # The cluster bus listens on port + 10000: both below the ephemeral range.
    port=$(free_port $(($(ephemeral_low) - 10000)))
    # Neither may be another node's port or bus port.
    taken=" ${ports[*]} "
    ! port_open 127.0.0.1 $((port + 10000)) && [[ $taken != *" $port "* \
      && $taken != *" $((port + 10000)) "* && $taken != *" $((port - 10000)) "* ]] \
      && ports+=("$port")
  done
  for port in "${ports[@]}"; do
    dir="$SERVICES_DIR/cluster-$port"
    mkdir -p "$dir"
    "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
      --logfile "$dir/redis.log" --daemonize no &
    STARTED_CLUSTER_PIDS+=($!)
    addrs+=("127.0.0.1:$port")
    urls+=("redis://127.0.0.1:$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 100); do port_open 127.0.0.1 "$port" && break; sleep 0.1; done
    port_open 127.0.0.1 "$port" || die "a cluster node did not start; see $SERVICES_DIR/cluster-$port/redis.log"
  done
  say "creating a throwaway Redis Cluster on ${addrs[*]}"
  "$cli" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$SERVICES_DIR/cluster-create.log" 2>&1 \
    || die "redis-cli --cluster create failed; see $SERVICES_DIR/cluster-create.log"
  for port in "${ports[@]}"; do
    for _ in $(seq 1 200); do
      "$cli" -p "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
      sleep 0.1
    done
    "$cli" -p "$port" cluster info | grep -q '^cluster_state:ok' || die "the cluster did not become ready (node $port)"
  done
  CLUSTER_URL=$(IFS=,; printf '%s' "${urls[*]}")
  export CLUSTER_URL
}

stop_redis_cluster() {
  local pid
  for pid in "${STARTED_CLUSTER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${STARTED_CLUSTER_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  STARTED_CLUSTER_PIDS=()
  return 0
}
