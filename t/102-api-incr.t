# shared_map_api: atomic add (POST incr).
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

# Every block gets the API suites' maps and locations unless it brings its own
# (t/lib/SharedMapTest.pm); a block named "..." continues the previous one.
use_api_config();

run_tests();

__DATA__

=== TEST 1: POST incr adds atomically; an absent key starts at 0 and becomes a long
--- request eval
["POST /api/m?key=c&incr=1", "POST /api/m?key=c&incr=1", "POST /api/m?key=c&incr=40", "GET /api/m?key=c"]
--- error_code eval
[200, 200, 200, 200]
--- response_body eval
["1", "2", "42", "42"]
--- response_headers eval
["Content-Type: text/plain", "", "", "X-Shared-Map-Type: long"]



=== TEST 2: init is where an absent key starts; it is ignored once the key exists
--- request eval
["POST /api/m?key=start&incr=2&init=10", "POST /api/m?key=start&incr=2&init=100", "POST /api/m?key=below&incr=0&init=-7"]
--- error_code eval
[200, 200, 200]
--- response_body eval
["12", "14", "-7"]



=== TEST 3: negative increments, down through zero
--- request eval
["POST /api/m?key=n&incr=-3", "POST /api/m?key=n&incr=5", "POST /api/m?key=n&incr=-2", "POST /api/m?key=n&incr=-9223372036854775808"]
--- error_code eval
[200, 200, 200, 200]
--- response_body eval
["-3", "2", "0", "-9223372036854775808"]



=== TEST 4: an int stays an int
--- request eval
["PUT /api/m?key=i&type=int\n5", "POST /api/m?key=i&incr=2", "GET /api/m?key=i"]
--- error_code eval
[201, 200, 200]
--- response_body eval
["", "7", "7"]
--- response_headers eval
["", "", "X-Shared-Map-Type: int"]



=== TEST 5: a long that would overflow is refused (409) and unchanged
--- request eval
["PUT /api/m?key=max&type=long\n9223372036854775807", "POST /api/m?key=max&incr=1", "GET /api/m?key=max",
 "PUT /api/m?key=min&type=long\n-9223372036854775808", "POST /api/m?key=min&incr=-1", "GET /api/m?key=min"]
--- error_code eval
[201, 409, 200, 201, 409, 200]
--- response_body eval
["", "overflow\n", "9223372036854775807", "", "overflow\n", "-9223372036854775808"]



=== TEST 6: an int that would overflow 32 bits is refused (409) and unchanged
--- request eval
["PUT /api/m?key=imax&type=int\n2147483647", "POST /api/m?key=imax&incr=1", "GET /api/m?key=imax"]
--- error_code eval
[201, 409, 200]
--- response_body eval
["", "overflow\n", "2147483647"]
--- response_headers eval
["", "", "X-Shared-Map-Type: int"]



=== TEST 7: init plus incr that overflows is refused and nothing is stored
--- request eval
["POST /api/m?key=big&incr=1&init=9223372036854775807", "GET /api/m?key=big"]
--- error_code eval
[409, 404]
--- response_body eval
["overflow\n", "key not found\n"]



=== TEST 8: incr on a string is a type conflict (409); the string is unchanged
--- request eval
["PUT /api/m?key=s\nabc", "POST /api/m?key=s&incr=1", "GET /api/m?key=s"]
--- error_code eval
[201, 409, 200]
--- response_body eval
["", "type conflict: the value is not a number\n", "abc"]



=== TEST 9: malformed numbers are refused (400) and change nothing
--- request eval
["POST /api/m?key=x&incr=abc", "POST /api/m?key=x&incr=", "POST /api/m?key=x&incr=1.5", "POST /api/m?key=x&incr=%201",
 "POST /api/m?key=x&incr=99999999999999999999", "POST /api/m?key=x&incr=1&init=-", "POST /api/m?key=x", "POST /api/m?key=x&incr",
 "POST /api/m?incr=1", "GET /api/m?key=x"]
--- error_code eval
[400, 400, 400, 400, 400, 400, 400, 400, 400, 404]
--- response_body eval
["invalid incr \"abc\"\n", "invalid incr \"\"\n", "invalid incr \"1.5\"\n", "invalid incr \" 1\"\n",
 "invalid incr \"99999999999999999999\"\n", "invalid init \"-\"\n", "missing argument \"incr\"\n",
 "argument \"incr\" needs a value\n", "missing argument \"key\"\n", "key not found\n"]



=== TEST 10: an absent key takes ttl, or the map's timeout without one
--- http_config
    shared_map m tinymap?space=1m&entries=1000;
    shared_map ttl tinymap?space=1m&timeout=1h;
--- request eval
["POST /api/ttl?key=t&incr=1&ttl=10m", "POST /api/ttl?key=d&incr=1", "POST /api/ttl?key=never&incr=1&ttl=0"]
--- error_code eval
[200, 200, 200]
--- response_body eval
["1", "1", "1"]



=== TEST 11: ... as the listing shows (entries sorted here; ttl=0 never expires)
--- request
GET /api/ttl
--- response_body_filters eval
sub { my @e = ($_[0] =~ /(\{"key":[^{}]*\})/g); CORE::join("\n", sort @e) . "\n" }
--- response_body_like eval
qr/^\{"key":"d","ttl":(3600|3599),"type":"long","value":1\}
\{"key":"never","type":"long","value":1\}
\{"key":"t","ttl":(600|599),"type":"long","value":1\}
\z/
