# shellcheck shell=bash
# The realistic front of the test suite (README "Tests"): what every real
# Confluence site looks like, built on loopback from Debian's packages.
#
#   source test/lib.sh; source test/front.sh
#
#  - a test CA made at run time, and a certificate for confluence.test and
#    *.confluence.test that it signed;
#  - host names from a private hosts file: confluence.test (127.0.0.1),
#    v6.confluence.test (::1), dual.confluence.test (both);
#  - nginx terminating TLS (1.2 and 1.3), with HTTP/2 on one listener and
#    HTTP/1.1 only on another, each on 127.0.0.1 and [::1], short keep-alive
#    limits (the far side closes idle connections), gzip, proxying to the
#    stand-in;
#  - tinyproxy, a real forward proxy (HTTPS through CONNECT).
#
# The names and the CA become the system's only inside a private mount
# namespace: cfdw_front_enter re-runs a command under `unshare -m` with the
# hosts file bind-mounted over /etc/hosts and a CA bundle (the system's plus
# the test CA) over the system bundle, so no server there needs a ca_file,
# as with a real site.  The machine's own files are never changed.
#
# Functions:
#   cfdw_front_make_ca DIR      the CA, the site certificate, the hosts file and
#                               the CA bundle in DIR; exports CFDW_FRONT_DIR,
#                               CFDW_FRONT_CA (the CA certificate)
#   cfdw_front_enter CMD...     exec CMD in a private mount namespace with those
#                               files mounted; sets CFDW_FRONT_NS=1 there
#   cfdw_front_start DIR        start nginx in front of STANDIN_URL and
#                               STANDIN_URL2 (log: DIR/nginx-*.log) and export
#                               FRONT_H2_PORT, FRONT_H1_PORT, FRONT_H2_PORT2,
#                               FRONT_H1_PORT2, FRONT_NGINX_PID
#   cfdw_front_stop
#   cfdw_proxy_start DIR        start tinyproxy (log: DIR/tinyproxy.log); exports
#                               FRONT_PROXY_URL, FRONT_PROXY_PID; it allows
#                               CONNECT to the front's TLS ports only
#   cfdw_proxy_stop
#   cfdw_front_urls h2|h1      point STANDIN_URL and STANDIN_URL2 at the front:
#                               h2 by dual.confluence.test over HTTP/2, h1 by
#                               confluence.test over HTTP/1.1 (TLS both)
#
# Knobs: CFDW_FRONT_MAX_LIFETIME (seconds, default 5400): nginx and tinyproxy
# end by themselves after it.

CFDW_FRONT_NAMES=(confluence.test v6.confluence.test dual.confluence.test)

cfdw_front_make_ca() {
  local dir=${1:?usage: cfdw_front_make_ca DIR} out
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"
  if ! out=$(
    set -e
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days 2 \
      -subj "/CN=confluence_fdw test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>&1
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$dir/site-key.pem" -out "$dir/site.csr" -subj "/CN=confluence.test" 2>&1
    printf 'subjectAltName=DNS:confluence.test,DNS:*.confluence.test\nextendedKeyUsage=serverAuth\n' >"$dir/site.ext"
    openssl x509 -req -in "$dir/site.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
      -CAcreateserial -days 2 -extfile "$dir/site.ext" -out "$dir/site.pem" 2>&1
  ); then
    cfdw_log "openssl could not make the front's certificates: $out"
    return 1
  fi
  chmod 644 "$dir/ca.pem" "$dir/site.pem"
  chmod 600 "$dir/ca-key.pem" "$dir/site-key.pem"
  # The machine's own entries stay (localhost, its name), ours are added.
  { cat /etc/hosts
    echo "127.0.0.1 confluence.test"
    echo "::1 v6.confluence.test"
    echo "127.0.0.1 dual.confluence.test"
    echo "::1 dual.confluence.test"
  } >"$dir/hosts"
  cat "$(cfdw_system_ca_bundle)" "$dir/ca.pem" >"$dir/ca-bundle.crt"
  chmod 644 "$dir/hosts" "$dir/ca-bundle.crt"
  CFDW_FRONT_DIR=$dir CFDW_FRONT_CA=$dir/ca.pem
  export CFDW_FRONT_DIR CFDW_FRONT_CA
}

# The CA bundle libcurl and curl use when no ca_file is given.
cfdw_system_ca_bundle() {
  local f
  f=$(curl-config --ca 2>/dev/null || true)
  [ -n "$f" ] || f=/etc/ssl/certs/ca-certificates.crt
  printf '%s\n' "$f"
}

cfdw_front_enter() {
  : "${CFDW_FRONT_DIR:?call cfdw_front_make_ca first}"
  local bundle
  bundle=$(cfdw_system_ca_bundle)
  [ -f "$bundle" ] || { cfdw_log "no system CA bundle at $bundle (ca-certificates)"; return 1; }
  CFDW_FRONT_NS=1 exec unshare -m --propagation private bash -c '
    mount --bind "$0/hosts" /etc/hosts &&
    mount --bind "$0/ca-bundle.crt" "$1" || exit 97
    shift
    exec "$@"' "$CFDW_FRONT_DIR" "$bundle" "$@"
}

cfdw_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# One server block: a TLS listener on both loopback addresses.
cfdw_front_server_block() {  # PORT HTTP2(on|off) UPSTREAM_PORT LABEL
  local h2=''
  [ "$2" = on ] && h2=' http2'
  cat <<EOF
  server {
    listen 127.0.0.1:$1 ssl$h2;
    listen [::1]:$1 ssl$h2;
    server_name confluence.test *.confluence.test;
    ssl_certificate $CFDW_FRONT_DIR/site.pem;
    ssl_certificate_key $CFDW_FRONT_DIR/site-key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://127.0.0.1:$3;
      proxy_set_header Host \$http_host;
      # the stand-in numbers client connections by these, not by its own
      # (nginx opens a new upstream connection per request)
      proxy_set_header X-Cfdw-Front-Conn "$4-\$connection";
      proxy_set_header X-Cfdw-Front "$4";
      proxy_set_header X-Cfdw-Front-Proto "\$server_protocol \$ssl_protocol";
    }
  }
EOF
}

cfdw_front_start() {
  local dir=${1:?usage: cfdw_front_start DIR} sp1 sp2 i ok
  : "${STANDIN_URL:?start the stand-in first}" "${CFDW_FRONT_DIR:?call cfdw_front_make_ca first}"
  command -v nginx >/dev/null || { cfdw_log "nginx is not installed (test/install-deps.sh)"; return 1; }
  mkdir -p "$dir/nginx-tmp"
  dir=$(cd "$dir" && pwd)
  sp1=${STANDIN_URL##*:} sp2=${STANDIN_URL2##*:}
  FRONT_H2_PORT=$(cfdw_free_port) FRONT_H1_PORT=$(cfdw_free_port)
  FRONT_H2_PORT2=$(cfdw_free_port) FRONT_H1_PORT2=$(cfdw_free_port)
  {
    cat <<EOF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log warn;
events { worker_connections 1024; }
http {
  # bytes on the wire and gzip's ratio, for the compression test
  log_format cfdw '\$server_port \$request_method \$request_uri \$status \$body_bytes_sent \$gzip_ratio \$server_protocol';
  access_log $dir/nginx-access.log cfdw;
  # nginx's error pages without its version, as sites serve them (and the
  # same expected output whichever nginx a Debian release has)
  server_tokens off;
  client_body_temp_path $dir/nginx-tmp/body;
  proxy_temp_path $dir/nginx-tmp/proxy;
  fastcgi_temp_path $dir/nginx-tmp/fastcgi;
  uwsgi_temp_path $dir/nginx-tmp/uwsgi;
  scgi_temp_path $dir/nginx-tmp/scgi;
  # Short keep-alive limits: the far side closes idle connections, and
  # closes busy ones after a few requests, as real sites and proxies do.
  keepalive_timeout 2s;
  keepalive_requests 25;
  client_max_body_size 20m;
  proxy_read_timeout 120s;
  proxy_buffering off;
  gzip on;
  gzip_proxied any;
  gzip_min_length 64;
  gzip_types application/json text/plain;
EOF
    cfdw_front_server_block "$FRONT_H2_PORT" on "$sp1" h2
    cfdw_front_server_block "$FRONT_H1_PORT" off "$sp1" h1
    cfdw_front_server_block "$FRONT_H2_PORT2" on "$sp2" h2b
    cfdw_front_server_block "$FRONT_H1_PORT2" off "$sp2" h1b
    echo "}"
  } >"$dir/nginx.conf"
  timeout -k 10 "${CFDW_FRONT_MAX_LIFETIME:-5400}" \
    nginx -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' </dev/null >"$dir/nginx-stdout.log" 2>&1 &
  FRONT_NGINX_PID=$!
  export FRONT_NGINX_PID FRONT_H2_PORT FRONT_H1_PORT FRONT_H2_PORT2 FRONT_H1_PORT2
  ok=0
  for ((i = 0; i < 100; i++)); do
    if curl -fsS --max-time 2 -o /dev/null --cacert "$CFDW_FRONT_CA" \
         --resolve "confluence.test:$FRONT_H2_PORT:127.0.0.1" \
         "https://confluence.test:$FRONT_H2_PORT/_standin/health" 2>/dev/null; then
      ok=1
      break
    fi
    kill -0 "$FRONT_NGINX_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$ok" != 1 ]; then
    cfdw_log "nginx did not start; its logs:"
    tail -20 "$dir/nginx-stdout.log" "$dir/nginx-error.log" >&2 2>/dev/null || true
    cfdw_front_stop
    return 1
  fi
  cfdw_log "front: nginx (pid $FRONT_NGINX_PID) TLS+HTTP/2 on $FRONT_H2_PORT, TLS+HTTP/1.1 on $FRONT_H1_PORT (second stand-in listener: $FRONT_H2_PORT2, $FRONT_H1_PORT2)"
}

cfdw_front_stop() {
  cfdw_stop_pid "${FRONT_NGINX_PID:-}" nginx
  FRONT_NGINX_PID=''
}

cfdw_front_urls() {
  case ${1:?usage: cfdw_front_urls h2|h1} in
    h2) STANDIN_URL="https://dual.confluence.test:$FRONT_H2_PORT"
        STANDIN_URL2="https://dual.confluence.test:$FRONT_H2_PORT2" ;;
    h1) STANDIN_URL="https://confluence.test:$FRONT_H1_PORT"
        STANDIN_URL2="https://confluence.test:$FRONT_H1_PORT2" ;;
    *) cfdw_log "cfdw_front_urls: h2 or h1"; return 1 ;;
  esac
  export STANDIN_URL STANDIN_URL2
}

cfdw_proxy_start() {
  local dir=${1:?usage: cfdw_proxy_start DIR} port i
  command -v tinyproxy >/dev/null || { cfdw_log "tinyproxy is not installed (test/install-deps.sh)"; return 1; }
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  port=$(cfdw_free_port)
  cat >"$dir/tinyproxy.conf" <<EOF
Port $port
Listen 127.0.0.1
Timeout 60
LogFile "$dir/tinyproxy.log"
LogLevel Info
PidFile "$dir/tinyproxy.pid"
MaxClients 64
Allow 127.0.0.1
ConnectPort $FRONT_H2_PORT
ConnectPort $FRONT_H1_PORT
EOF
  # tinyproxy would create its log private; the tests read it as postgres
  : >"$dir/tinyproxy.log"
  chmod 644 "$dir/tinyproxy.log"
  timeout -k 10 "${CFDW_FRONT_MAX_LIFETIME:-5400}" tinyproxy -d -c "$dir/tinyproxy.conf" \
    </dev/null >"$dir/tinyproxy-stdout.log" 2>&1 &
  FRONT_PROXY_PID=$!
  for ((i = 0; i < 100; i++)); do
    if curl -fsS --max-time 2 -o /dev/null --cacert "$CFDW_FRONT_CA" -x "http://127.0.0.1:$port" \
         --resolve "confluence.test:$FRONT_H2_PORT:127.0.0.1" \
         "https://confluence.test:$FRONT_H2_PORT/_standin/health" 2>/dev/null; then
      FRONT_PROXY_URL="http://127.0.0.1:$port"
      export FRONT_PROXY_URL FRONT_PROXY_PID
      cfdw_log "proxy: tinyproxy (pid $FRONT_PROXY_PID) at $FRONT_PROXY_URL"
      return 0
    fi
    kill -0 "$FRONT_PROXY_PID" 2>/dev/null || break
    sleep 0.1
  done
  cfdw_log "tinyproxy did not start; its log:"
  tail -20 "$dir/tinyproxy-stdout.log" "$dir/tinyproxy.log" >&2 2>/dev/null || true
  cfdw_proxy_stop
  return 1
}

cfdw_proxy_stop() {
  cfdw_stop_pid "${FRONT_PROXY_PID:-}" tinyproxy
  FRONT_PROXY_PID=''
}
