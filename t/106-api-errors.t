# shared_map_api: every error: status, short plain-text reason, nothing changed.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

# Every block gets the API suites' maps and locations unless it brings its own
# (t/lib/SharedMapTest.pm); a block named "..." continues the previous one.
use_api_config();

run_tests();

__DATA__

=== TEST 1: 400: malformed percent-encoding, unknown, duplicate and misplaced arguments
--- request eval
["GET /api/m?key=%zz", "GET /api/m?key=%4", "GET /api/m?key=abc%", "GET /api/m?foo=1", "GET /api/m?key=a&key=b",
 "GET /api/m?key=a&incr=1", "DELETE /api/m?key=a&ttl=1", "DELETE /api/m?prefix=a", "GET /api/?key=a", "GET /api/m?key"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400, 400]
--- response_headers eval
["Content-Type: text/plain", "", "", "", "", "", "", "", "", ""]
--- response_body eval
["invalid percent-encoding in argument \"key\"\n", "invalid percent-encoding in argument \"key\"\n",
 "invalid percent-encoding in argument \"key\"\n", "unknown argument \"foo\"\n", "duplicate argument \"key\"\n",
 "unexpected argument \"incr\"\n", "unexpected argument \"ttl\"\n", "unexpected argument \"prefix\"\n",
 "unexpected argument \"key\"\n", "argument \"key\" needs a value\n"]



=== TEST 2: 400: a PUT without a key, with a bad ttl, type, nx or number, changes nothing
--- request eval
["PUT /api/m?ttl=1\nv", "PUT /api/m?key=k&ttl=soon\nv", "PUT /api/m?key=k&ttl=-1\nv", "PUT /api/m?key=k&type=float\n1.5",
 "PUT /api/m?key=k&nx=1\nv", "PUT /api/m?key=k&type=int\n1.5", "PUT /api/m?key=k&type=int\n2147483648",
 "PUT /api/m?key=k&type=long\n9223372036854775808", "PUT /api/m?key=k&type=long\n 1", "PUT /api/m?key=k&type=int\n",
 "GET /api/m?key=k"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 404]
--- more_headers eval
["", "", "", "", "", "", "", "", "Content-Length: 2", "Content-Length: 0", ""]
--- response_body eval
["missing argument \"key\"\n", "invalid ttl \"soon\"\n", "invalid ttl \"-1\"\n", "invalid type \"float\"\n",
 "argument \"nx\" takes no value\n", "invalid int value \"1.5\"\n", "invalid int value \"2147483648\"\n",
 "invalid long value \"9223372036854775808\"\n", "invalid long value \" 1\"\n", "invalid int value \"\"\n",
 "key not found\n"]



=== TEST 3: 400: bad listing arguments
--- request eval
["GET /api/m?limit=-1", "GET /api/m?limit=ten", "GET /api/m?format=xml", "GET /api/?format=", "GET /api/m?prefix"]
--- error_code eval
[400, 400, 400, 400, 400]
--- response_body eval
["invalid limit \"-1\"\n", "invalid limit \"ten\"\n", "invalid format \"xml\"\n", "invalid format \"\"\n",
 "argument \"prefix\" needs a value\n"]



=== TEST 4: 404: an unknown map, an absent key
--- request eval
["GET /api/nope?key=a", "PUT /api/nope?key=a\nv", "GET /api/m/extra", "GET /api/m?key=absent", "DELETE /api/m?key=absent"]
--- error_code eval
[404, 404, 404, 404, 404]
--- response_body eval
["unknown map \"nope\"\n", "unknown map \"nope\"\n", "unknown map \"m/extra\"\n", "key not found\n", "key not found\n"]



=== TEST 5: 405: an unknown method, a write to the list of maps
--- request eval
["PATCH /api/m?key=a", "OPTIONS /api/m", "PUT /api/\nv", "DELETE /api/"]
--- error_code eval
[405, 405, 405, 405]
--- response_headers eval
["Allow: GET, HEAD, PUT, POST, DELETE", "Allow: GET, HEAD, PUT, POST, DELETE", "Allow: GET, HEAD", "Allow: GET, HEAD"]
--- response_body eval
["method not allowed\n", "method not allowed\n", "method not allowed\n", "method not allowed\n"]



=== TEST 6: 409: nx and present, a type conflict, an overflow; nothing changes
--- request eval
["PUT /api/m?key=s\nstr", "PUT /api/m?key=s&nx&type=int\n1", "POST /api/m?key=s&incr=1",
 "PUT /api/m?key=n&type=long\n9223372036854775800", "POST /api/m?key=n&incr=8", "GET /api/m?key=s", "GET /api/m?key=n"]
--- error_code eval
[201, 409, 409, 201, 409, 200, 200]
--- response_body eval
["", "key exists\n", "type conflict: the value is not a number\n", "", "overflow\n", "str", "9223372036854775800"]



=== TEST 7: 413: a value larger than the map's space; nothing is stored
--- http_config
    shared_map small tinymap?space=32k;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/small?key=k\n" . ("v" x 40000), "GET /api/small?key=k", "PUT /api/small?key=k\n" . ("v" x 4000), "GET /api/small?key=k"]
--- error_code eval
[413, 404, 201, 200]
--- response_body eval
["value too large\n", "key not found\n", "", "v" x 4000]



=== TEST 8: 413: a key larger than the map's space
--- http_config
    shared_map small8 tinymap?space=32k;
    large_client_header_buffers 4 128k;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/small8?key=" . ("k" x 40000) . "\nv", "POST /api/small8?incr=1&key=" . ("k" x 40000), "GET /api/small8"]
--- error_code eval
[413, 413, 200]
--- response_body_like eval
["^key too large\n\\z", "^key too large\n\\z", '"entries":0,']



=== TEST 9: 413: client_max_body_size, from nginx
--- config
    location /api/ {
        client_max_body_size 10;
        shared_map_api;
    }
--- request eval
["PUT /api/m?key=k\n0123456789x", "GET /api/m?key=k"]
--- error_code eval
[413, 404]



=== TEST 10: 507: the map is full and cannot evict
--- http_config
    shared_map full tinymap?space=32k&entries=2;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/full?key=a\n1", "POST /api/full?key=b&incr=1", "POST /api/full?key=d&incr=1"]
--- error_code eval
[201, 200, 507]
--- response_body eval
["", "1", "shared map \"full\" is full\n"]



=== TEST 11: ... a refused PUT gets 507 and is logged
--- request
PUT /api/full?key=c
3
--- error_code: 507
--- response_body
shared map "full" is full
--- error_log
shared map "full" is full, could not add "c"



=== TEST 12: ... and the refused writes changed nothing; replacing still works
--- request eval
["PUT /api/full?key=a\nreplaced", "GET /api/full?key=a", "GET /api/full?key=c", "GET /api/full?key=d", "GET /api/full?key=b"]
--- error_code eval
[204, 200, 404, 404, 200]
--- response_body eval
["", "replaced", "key not found\n", "key not found\n", "1"]



=== TEST 13: with evict, the same writes succeed by evicting
--- http_config
    shared_map lru tinymap?space=32k&entries=2&evict;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/lru?key=a\n1", "PUT /api/lru?key=b\n2", "PUT /api/lru?key=c\n3", "GET /api/lru?key=c"]
--- error_code eval
[201, 201, 201, 200]
--- response_body eval
["", "", "", "3"]



=== TEST 14: shared_map_api takes at most a name and readonly
--- config
    location /api/ { shared_map_api m extra; }
--- must_die
--- error_log
invalid parameter "extra"



=== TEST 15: shared_map_api names a defined map
--- config
    location /api/ { shared_map_api nosuch; }
--- must_die
--- error_log
zero size shared memory zone "nosuch"



=== TEST 16: shared_map_api is allowed once per location
--- config
    location /api/ { shared_map_api; shared_map_api m; }
--- must_die
--- error_log
"shared_map_api" directive is duplicate



=== TEST 17: shared_map_api is allowed only in a location
--- config
    shared_map_api;
--- must_die
--- error_log
"shared_map_api" directive is not allowed here
