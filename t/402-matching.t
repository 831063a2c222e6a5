# match=prefix and match=ip maps: what a lookup finds (the API and variables),
# what a write stores, and keys an ip map refuses.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

no_shuffle();
no_long_string();

our $HttpConfig = <<'_EOC_';
    shared_map routes tinymap?space=1m&match=prefix;
    shared_map nets hashmap?space=1m&match=ip;
    shared_map_var $uri $route map=routes;
    shared_map_var $arg_ip $net map=nets;
    shared_map_var $remote_addr $client_net map=nets;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; }
    location /r/ { return 200 "[$route]"; }
    location = /ip { return 200 "[$net]"; }
    location = /client { return 200 "[$client_net]"; }
    location = /setnet { set $net $arg_v; return 200 "[$net]"; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);

run_tests();

__DATA__

=== TEST 1: a prefix lookup finds the longest stored prefix, through the API and a variable
--- request eval
["PUT /api/routes?key=/r/\nroot", "PUT /api/routes?key=/r/api/\napi", "PUT /api/routes?key=/r/api/v2/\nv2",
 "GET /api/routes?key=/r/api/v2/users", "GET /api/routes?key=/r/api/v1", "GET /api/routes?key=/x",
 "GET /r/api/v2/x", "GET /r/api/v1/x", "GET /r/static/a.css"]
--- error_code eval
[201, 201, 201, 200, 200, 404, 200, 200, 200]
--- response_body eval
["", "", "", "v2", "api", "key not found\n", "[v2]", "[api]", "[root]"]
--- response_headers eval
["", "", "", "X-Shared-Map-Key: /r/api/v2/", "X-Shared-Map-Key: /r/api/", "", "", "", ""]



=== TEST 2: ... writes and deletes name a stored key exactly
--- request eval
["DELETE /api/routes?key=/r/api/v1", "DELETE /api/routes?key=/r/api/", "GET /r/api/v1/x",
 "GET /api/routes?key=/r/api/"]
--- error_code eval
[404, 204, 200, 200]
--- response_body eval
["key not found\n", "", "[root]", "root"]



=== TEST 3: ip ranges are stored normalised and listed in that form
--- request eval
["PUT /api/nets?key=10.1.2.3/8\neight", "PUT /api/nets?key=10.1.0.0/16\nsixteen",
 "PUT /api/nets?key=10.1.2.0%2F24\ntwenty-four", "PUT /api/nets?key=10.1.2.3/32\nhost",
 "PUT /api/nets?key=2001:DB8::1/32\nv6", "GET /api/nets"]
--- error_code eval
[201, 201, 201, 201, 201, 200]
--- response_body_like eval
["", "", "", "", "", qr/"key":"(10\.0\.0\.0\/8|10\.1\.0\.0\/16|10\.1\.2\.0\/24|10\.1\.2\.3|2001:db8::\/32)".*"key":"(?!\1)/]



=== TEST 4: ... a lookup finds the most specific range holding the address
--- request eval
["GET /api/nets?key=10.1.2.3", "GET /api/nets?key=10.1.2.4", "GET /api/nets?key=10.1.3.1",
 "GET /api/nets?key=10.200.0.1", "GET /api/nets?key=11.0.0.1", "GET /api/nets?key=2001:db8:ffff::1",
 "GET /ip?ip=10.1.2.9", "GET /ip?ip=::ffff:10.9.9.9", "GET /ip?ip=hostname", "GET /client"]
--- error_code eval
[200, 200, 200, 200, 404, 200, 200, 200, 200, 200]
--- response_body eval
["host", "twenty-four", "sixteen", "eight", "key not found\n", "v6", "[twenty-four]", "[eight]", "[]", "[]"]
--- response_headers eval
["X-Shared-Map-Key: 10.1.2.3", "X-Shared-Map-Key: 10.1.2.0/24", "X-Shared-Map-Key: 10.1.0.0/16",
 "X-Shared-Map-Key: 10.0.0.0/8", "", "X-Shared-Map-Key: 2001:db8::/32", "", "", "", ""]



=== TEST 5: a key that is no address or range is refused with 400, and nothing is written
--- request eval
["PUT /api/nets?key=example.com\nx", "POST /api/nets?key=10.0.0.1/33&incr=1", "DELETE /api/nets?key=nope",
 "PUT /api/nets?key=010.0.0.1\nx", "GET /api/nets?key=example.com"]
--- error_code eval
[400, 400, 400, 400, 404]
--- response_body eval
["invalid key \"example.com\": not an IP address or range\n",
 "invalid key \"10.0.0.1/33\": not an IP address or range\n",
 "invalid key \"nope\": not an IP address or range\n",
 "invalid key \"010.0.0.1\": not an IP address or range\n", "key not found\n"]



=== TEST 6: the client's own address, and deletes in any spelling of the range
--- request eval
["PUT /api/nets?key=127.0.0.0/8\nloopback", "GET /client", "DELETE /api/nets?key=127.1.2.3/8", "GET /client"]
--- error_code eval
[201, 200, 204, 200]
--- response_body eval
["", "[loopback]", "", "[]"]



=== TEST 7: set on an ip map's variable normalises the key; a bad key is logged, not stored
--- request eval
["GET /setnet?ip=192.168.7.7/16&v=lan", "GET /api/nets?key=192.168.0.0/16"]
--- error_code eval
[200, 200]
--- response_body eval
["[lan]", "lan"]



=== TEST 8: ... a bad key is logged, not stored
--- request
GET /setnet?ip=bad&v=x
--- response_body: []
--- error_log
shared map "nets": "bad": not an IP address or range



=== TEST 9: match=exact is the default and finds only the key itself
--- http_config
    shared_map e hashmap?space=1m&match=exact;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/e?key=/a/\nx", "GET /api/e?key=/a/b", "GET /api/e?key=/a/"]
--- error_code eval
[201, 404, 200]
--- response_headers eval
["", "", "!X-Shared-Map-Key"]



=== TEST 10: a prefix map refuses keys longer than 255 bytes
--- request eval
["PUT /api/routes?key=" . ("a" x 256) . "\nx", "PUT /api/routes?key=" . ("a" x 255) . "\nx"]
--- error_code eval
[413, 201]



=== TEST 11: a bad match parameter
--- http_config
    shared_map m hashmap?space=1m&match=regex;
--- config
--- must_die
--- error_log
invalid parameter "match=regex"



=== TEST 12: a found key holding CR and LF is escaped in X-Shared-Map-Key
--- request eval
["PUT /api/routes?key=/r/x%0D%0AX-Evil:%201/\nv", "GET /api/routes?key=/r/x%0D%0AX-Evil:%201/more"]
--- error_code eval
[201, 200]
--- response_headers eval
["", "X-Shared-Map-Key: /r/x%0D%0AX-Evil: 1/\n!X-Evil"]



=== TEST 13: keys of every length up to 255: each lookup finds the longest, a deleted one falls back, listings show the stored keys alone
--- request eval
[(map { "PUT /api/routes?key=/m/" . ("b" x $_) . "\nm$_" } 0 .. 252),
 "GET /api/routes?key=/m/" . ("b" x 300), "GET /api/routes?key=/m/bbbbbc", "GET /api/routes?key=/m/" . ("c" x 300),
 "DELETE /api/routes?key=/m/bbbbb", "GET /api/routes?key=/m/bbbbbc",
 "GET /api/routes?prefix=/m/"]
--- error_code eval
[(map { 201 } 0 .. 252), 200, 200, 200, 204, 200, 200]
--- response_body_like eval
[(map { qr/^$/ } 0 .. 252), qr/^m252$/, qr/^m5$/, qr/^m0$/, qr/^$/, qr/^m4$/,
 qr/\A(?:(?!"key").)*(?:"key":"\/m\/b*"(?:(?!"key").)*){252}\z/s]
--- response_headers eval
[(map { "" } 0 .. 252), "X-Shared-Map-Key: /m/" . ("b" x 252), "X-Shared-Map-Key: /m/bbbbb", "X-Shared-Map-Key: /m/",
 "", "X-Shared-Map-Key: /m/bbbb", ""]
