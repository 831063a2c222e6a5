# Conditional API requests: ETags on reads, If-Match and If-None-Match on
# writes of a key (compare-and-set), 412 with nothing changed otherwise.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

no_shuffle();
no_long_string();

our $HttpConfig = <<'_EOC_';
    shared_map m hashmap?space=1m;
    shared_map nets hashmap?space=1m&match=ip;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);

run_tests();

__DATA__

=== TEST 1: a read answers a strong ETag of the type and the value
--- request eval
["PUT /api/m?key=s\nhello", "GET /api/m?key=s", "PUT /api/m?key=n&type=long\n42", "GET /api/m?key=n",
 "PUT /api/m?key=i&type=int\n42", "GET /api/m?key=i", "HEAD /api/m?key=n"]
--- error_code eval
[201, 200, 201, 200, 201, 200, 200]
--- response_headers eval
["", "ETag: \"s-5-cbd8a7b341bd9b025b1e906a48ae1d19\"", "", "ETag: \"l-42\"", "", "ETag: \"i-42\"", "ETag: \"l-42\""]



=== TEST 2: ... If-Match with the current ETag writes; with another, 412 and nothing changes
--- request eval
["PUT /api/m?key=s\nv2", "PUT /api/m?key=s\nv3", "GET /api/m?key=s"]
--- more_headers eval
["If-Match: \"s-5-cbd8a7b341bd9b025b1e906a48ae1d19\"", "If-Match: \"s-5-cbd8a7b341bd9b025b1e906a48ae1d19\"", ""]
--- error_code eval
[204, 412, 200]
--- response_body eval
["", "precondition failed\n", "v2"]



=== TEST 3: ... compare-and-set on a counter: POST with If-Match
--- request eval
["POST /api/m?key=n&incr=1", "POST /api/m?key=n&incr=1", "GET /api/m?key=n"]
--- more_headers eval
["If-Match: \"l-42\"", "If-Match: \"l-42\"", ""]
--- error_code eval
[200, 412, 200]
--- response_body eval
["43", "precondition failed\n", "43"]



=== TEST 4: ... If-Match: * only when present; weak tags never match
--- request eval
["PUT /api/m?key=absent\nx", "PUT /api/m?key=n&type=long\n7", "PUT /api/m?key=n&type=long\n8", "GET /api/m?key=absent"]
--- more_headers eval
["If-Match: *", "If-Match: *", "If-Match: W/\"l-7\"", ""]
--- error_code eval
[412, 204, 412, 404]



=== TEST 5: ... If-None-Match: * creates only when absent
--- request eval
["PUT /api/m?key=lock\nme", "PUT /api/m?key=lock\nyou", "GET /api/m?key=lock", "POST /api/m?key=lock2&incr=5"]
--- more_headers eval
["If-None-Match: *", "If-None-Match: *", "", "If-None-Match: *"]
--- error_code eval
[201, 412, 200, 200]
--- response_body eval
["", "precondition failed\n", "me", "5"]



=== TEST 6: ... DELETE with If-Match: the current ETag deletes; a stale one does not
--- request eval
["DELETE /api/m?key=n", "DELETE /api/m?key=n", "GET /api/m?key=n", "DELETE /api/m?key=n"]
--- more_headers eval
["If-Match: \"l-1\"", "If-Match: \"l-1\", \"l-7\"", "", "If-Match: *"]
--- error_code eval
[412, 204, 404, 412]



=== TEST 7: ... a list in If-None-Match: the write proceeds when none matches
--- request eval
["PUT /api/m?key=lock\nthem", "PUT /api/m?key=lock\nagain", "GET /api/m?key=lock"]
--- more_headers eval
["If-None-Match: \"l-1\", \"s-2-0\"", "If-None-Match: \"s-4-0\", W/\"s-4-9a4d3c8c1a0e2c6c8ad6c4c74a5c4b3f\"", ""]
--- error_code eval
[204, 204, 200]
--- response_body eval
["", "", "again"]



=== TEST 8: ip maps: the ETag of the range found; writes name the range
--- request eval
["PUT /api/nets?key=10.0.0.0/8&type=int\n1", "GET /api/nets?key=10.2.3.4", "PUT /api/nets?key=10.0.0.0/8&type=int\n2",
 "PUT /api/nets?key=10.9.9.9/8&type=int\n3"]
--- more_headers eval
["", "", "If-Match: \"i-1\"", "If-Match: \"i-1\""]
--- error_code eval
[201, 200, 204, 412]
--- response_headers eval
["", "ETag: \"i-1\"\nX-Shared-Map-Key: 10.0.0.0/8", "", ""]



=== TEST 9: ... a read with If-None-Match of the current ETag is 304; If-Match of another, 412
--- request eval
["GET /api/nets?key=10.2.3.4", "GET /api/nets?key=10.2.3.4", "GET /api/nets?key=10.2.3.4"]
--- more_headers eval
["If-None-Match: \"i-2\"", "If-Match: \"i-1\"", "If-None-Match: \"i-1\""]
--- error_code eval
[304, 412, 200]
