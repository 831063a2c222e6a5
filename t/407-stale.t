# GET ?stale: an expired entry still held (not yet swept, evicted or
# overwritten) is answered with X-Shared-Map-Stale: 1, and 404 once it is
# gone. No read removes an expired entry; stale=time keeps it from the sweep.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

master_on();
workers(2);
no_shuffle();
no_long_string();

our $HttpConfig = <<'_EOC_';
    shared_map held hashmap?space=1m&stale=1h;
    shared_map quick hashmap?space=1m;
    shared_map small tinymap?space=32k&entries=2&stale=1h;
    shared_map_var $arg_k $held_value map=held;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; }
    location = /var { return 200 "[$held_value]"; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);

run_tests();

__DATA__

=== TEST 1: a live entry read with stale is answered as ever, without the mark
--- request eval
["PUT /api/held?key=k&ttl=1\nold", "GET /api/held?key=k&stale", "PUT /api/quick?key=k&ttl=1\nold",
 "PUT /api/small?key=k&ttl=1\nold", "PUT /api/small?key=live\nv", "GET /api/held?key=absent&stale"]
--- error_code eval
[201, 200, 201, 201, 201, 404]
--- response_body eval
["", "old", "", "", "", "key not found\n"]
--- response_headers eval
["", "X-Shared-Map-Stale:\nX-Shared-Map-Type: string", "", "", "", "X-Shared-Map-Stale:"]



=== TEST 2: ... expired: a plain read is 404, a stale read answers it marked, and reads leave it held
--- init
sleep 4;
--- request eval
["GET /api/held?key=k", "GET /var?k=k", "GET /api/held?key=k&stale", "GET /api/held?key=k",
 "HEAD /api/held?key=k&stale", "GET /api/held?key=k&stale"]
--- error_code eval
[404, 200, 200, 404, 200, 200]
--- response_body eval
["key not found\n", "[]", "old", "key not found\n", "", "old"]
--- response_headers eval
["X-Shared-Map-Stale:", "", "X-Shared-Map-Stale: 1\nX-Shared-Map-Type: string",
 "", "X-Shared-Map-Stale: 1", "X-Shared-Map-Stale: 1"]



=== TEST 3: ... listings leave it out, unless asked for with stale (JSON only)
--- request eval
["GET /api/held", "GET /api/held?stale", "GET /api/held?format=prometheus&stale", "GET /api/held?key=k&stale=1"]
--- error_code eval
[200, 200, 400, 400]
--- response_body_like eval
['"entries":\[\],', '"entries":\[\{"key":"k","stale":true,"ttl":0,"type":"string","value":"old"\}\]',
 'argument "stale" is for JSON listings only', 'argument "stale" takes no value']



=== TEST 4: ... without stale=, the sweep has removed it within a second or two: 404
--- request eval
["GET /api/quick?key=k&stale", "GET /api/quick"]
--- error_code eval
[404, 200]
--- response_body_like eval
["key not found", '"expirations":1,']



=== TEST 5: ... a full map reclaims it before it evicts: 404 once its room is taken
--- request eval
["GET /api/small?key=k&stale", "PUT /api/small?key=other\nv", "GET /api/small?key=k&stale", "GET /api/small?key=live"]
--- error_code eval
[200, 201, 404, 200]



=== TEST 6: ... a write to the key ends it: the new value is live, a delete leaves nothing
--- request eval
["PUT /api/held?key=k\nnew", "GET /api/held?key=k&stale", "PUT /api/held?key=gone&ttl=1\nx"]
--- error_code eval
[201, 200, 201]
--- response_body eval
["", "new", ""]
--- response_headers eval
["", "X-Shared-Map-Stale:", ""]



=== TEST 7: ... (two seconds later) DELETE of an expired key is 404 and removes it
--- init
sleep 2;
--- request eval
["GET /api/held?key=gone&stale", "DELETE /api/held?key=gone", "GET /api/held?key=gone&stale"]
--- error_code eval
[200, 404, 404]



=== TEST 8: stale= takes a time
--- http_config
    shared_map m hashmap?space=1m&stale=soon;
--- config
--- must_die
--- error_log
invalid parameter "stale=soon"
