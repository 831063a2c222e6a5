#!/usr/bin/env bash
# docs/openapi.yaml against the module: the document must be valid OpenAPI 3
# (openapi-spec-validator), and a running nginx must answer what it describes
# (schemathesis, a bounded number of generated requests per operation: no 5xx,
# only documented statuses, content types, headers and bodies).
#
#   TEST_NGINX_BINARY=objs/nginx TEST_NGINX_MODULE=objs/ngx_http_shared_map_module.so \
#   OPENAPI_PORT=8984 t/openapi/check.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
nginx=${TEST_NGINX_BINARY:-$root/objs/nginx}
module=${TEST_NGINX_MODULE:-$root/objs/ngx_http_shared_map_module.so}
port=${OPENAPI_PORT:-8984}
examples=${OPENAPI_EXAMPLES:-25}
prefix=$root/build/openapi

python3 -m openapi_spec_validator "$root/docs/openapi.yaml"

rm -rf "$prefix" && mkdir -p "$prefix/logs"
cat > "$prefix/nginx.conf" <<CONF
load_module $module;
worker_processes 2;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 256; }
http {
    access_log off;
    client_max_body_size 64k;
    shared_map counters tinymap?space=1m&entries=1000;
    shared_map notes hashmap?space=1m&entries=1000&timeout=1h;
    shared_map sessions hashmap?space=1m&timeout=30m;
    server {
        listen 127.0.0.1:$port;
        location /maps/ { shared_map_api; }
        location = /session {
            shared_map_session sessions;
            shared_map_session_api write;
        }
    }
}
CONF
"$nginx" -p "$prefix/" -c "$prefix/nginx.conf"
trap '"$nginx" -p "$prefix/" -c "$prefix/nginx.conf" -s stop' EXIT

# HEAD and the dashboard's HTML are checked by t/ and the browser test.
# schemathesis keeps a cache in its working directory: build/openapi.
cd "$prefix"
schemathesis run "$root/docs/openapi.yaml" --url "http://127.0.0.1:$port" \
    --max-examples "$examples" --seed 1 --workers 1 --request-timeout 5 \
    --generation-database none --no-color \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    ${OPENAPI_SCHEMATHESIS_ARGS:-}
if grep -E '\[(alert|crit|emerg)\]|exited on signal' "$prefix/logs/error.log"; then
    echo "openapi: nginx logged the above"; exit 1
fi
echo "openapi: ok"
