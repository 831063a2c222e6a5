# shared_map_api: readonly refuses writes with 405.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

# Every block gets the API suites' maps and locations unless it brings its own
# (t/lib/SharedMapTest.pm); a block named "..." continues the previous one.
use_api_config(config => <<'_EOC_');
    location /api/ { shared_map_api; }
    location /ro/ { shared_map_api readonly; }
    location = /rom { shared_map_api m readonly; }
_EOC_

run_tests();

__DATA__

=== TEST 1: reads are served under readonly, for every map and for one
--- request eval
["PUT /api/m?key=k\nvalue", "GET /ro/m?key=k", "GET /rom?key=k", "HEAD /rom?key=k", "GET /ro/m?key=nope"]
--- error_code eval
[201, 200, 200, 200, 404]
--- response_body eval
["", "value", "value", "", "key not found\n"]



=== TEST 2: listings are reads
--- request eval
["GET /ro/", "GET /ro/m", "GET /rom?format=prometheus"]
--- error_code eval
[200, 200, 200]
--- response_body_like eval
['^\{"maps":\[', '^\{"name":"m",', '^# HELP']



=== TEST 3: PUT, POST, DELETE of a key and DELETE of the map are refused with 405 and Allow
--- request eval
["PUT /api/m?key=k3\nvalue", "PUT /ro/m?key=k3\nchanged", "PUT /rom?key=new\nx", "POST /ro/m?key=k3&incr=1",
 "DELETE /rom?key=k3", "DELETE /ro/m", "DELETE /rom"]
--- error_code eval
[201, 405, 405, 405, 405, 405, 405]
--- response_headers eval
["", "Allow: GET, HEAD", "Allow: GET, HEAD", "Allow: GET, HEAD", "Allow: GET, HEAD", "Allow: GET, HEAD", "Allow: GET, HEAD"]
--- response_body eval
["", "shared map \"m\" is read-only here\n", "shared map \"m\" is read-only here\n", "shared map \"m\" is read-only here\n",
 "shared map \"m\" is read-only here\n", "shared map \"m\" is read-only here\n", "shared map \"m\" is read-only here\n"]



=== TEST 4: ... and changed nothing
--- request eval
["GET /api/m?key=k3", "GET /api/m?key=new"]
--- error_code eval
[200, 404]
--- response_body eval
["value", "key not found\n"]



=== TEST 5: a refused write with a body keeps the connection usable
--- pipelined_requests eval
["PUT /ro/m?key=k5\n" . ("x" x 5000), "GET /ro/m?key=k5"]
--- error_code eval
[405, 404]
--- response_body eval
["shared map \"m\" is read-only here\n", "key not found\n"]



=== TEST 6: other methods are refused with 405 in readonly and writable locations alike
--- request eval
["PATCH /ro/m?key=k", "PATCH /api/m?key=k", "OPTIONS /rom"]
--- error_code eval
[405, 405, 405]
--- response_headers eval
["Allow: GET, HEAD", "Allow: GET, HEAD, PUT, POST, DELETE", "Allow: GET, HEAD"]
--- response_body eval
["method not allowed\n", "method not allowed\n", "method not allowed\n"]



=== TEST 7: a map named "readonly" is still reachable: readonly is the last word
--- http_config
    shared_map readonly tinymap?space=32k;
--- config
    location = /a { shared_map_api readonly readonly; }
    location = /b { shared_map_api readonly; }
--- request eval
["PUT /a?key=k\nv", "GET /a?key=k", "GET /b/readonly?key=k"]
--- error_code eval
[405, 404, 404]
