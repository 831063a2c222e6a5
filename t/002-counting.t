# $shared_map_incr, $shared_map_value and shared_map_count.
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: $shared_map_incr counts at most once per request however often it is read
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=1m&entries=100;
--- config
location = /t {
    shared_map_key c $uri;
    add_header X-Count $shared_map_incr;
    return 200 "$shared_map_incr $shared_map_incr";
}
--- request eval
["GET /t", "GET /t", "GET /t"]
--- response_body eval
["1 1", "2 2", "3 3"]
--- response_headers eval
["X-Count: 1", "X-Count: 2", "X-Count: 3"]



=== TEST 2: $shared_map_value reads without changing; empty when absent
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c2 hashmap?space=1m&entries=100;
--- config
location = /incr { shared_map_key c2 $arg_k; return 200 "$shared_map_incr"; }
location = /value { shared_map_key c2 $arg_k; return 200 "[$shared_map_value][$shared_map_value]"; }
--- request eval
["GET /value?k=a", "GET /incr?k=a", "GET /incr?k=a", "GET /value?k=a", "GET /value?k=b"]
--- response_body eval
["[][]", "1", "2", "[2][2]", "[][]"]



=== TEST 3: keys are complex values; maps are independent
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map a tinymap?space=32k;
shared_map b hashmap?space=32k;
--- config
location = /a { shared_map_key a "$host:$arg_k"; return 200 "$shared_map_incr"; }
location = /b { shared_map_key b "$host:$arg_k"; return 200 "$shared_map_incr"; }
location = /va { shared_map_key a "$host:$arg_k"; return 200 "$shared_map_value"; }
--- request eval
["GET /a?k=x", "GET /a?k=x", "GET /b?k=x", "GET /a?k=y", "GET /va?k=x"]
--- response_body eval
["1", "2", "1", "1", "2"]



=== TEST 4: shared_map_key is inherited from the server level
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=32k;
--- config
shared_map_key c server-wide;
location = /one { return 200 "$shared_map_incr"; }
location = /two { return 200 "$shared_map_incr"; }
--- request eval
["GET /one", "GET /two", "GET /one"]
--- response_body eval
["1", "2", "3"]



=== TEST 5: without shared_map_key the variables are empty
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=32k;
--- config
location = /t { return 200 "[$shared_map_incr][$shared_map_value]"; }
--- request
GET /t
--- response_body: [][]



=== TEST 6: shared_map_count counts every request by URI, whatever its status
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map uri_access_counters tinymap?space=1m&entries=8096;
--- config
shared_map_count uri_access_counters $uri;
location = /error { return 500; }
location = /ok { return 200 "ok"; }
location = /count {
    shared_map_key uri_access_counters $arg_uri;
    return 200 "$shared_map_value";
}
--- request eval
["GET /missing", "GET /missing", "GET /error", "GET /ok", "GET /error", "GET /missing",
 "GET /count?uri=/missing", "GET /count?uri=/error", "GET /count?uri=/ok", "GET /count?uri=/count"]
--- error_code eval
[404, 404, 500, 200, 500, 404, 200, 200, 200, 200]
--- response_body_like eval
[".*", ".*", ".*", "ok", ".*", ".*", "^3\$", "^2\$", "^1\$", "^3\$"]



=== TEST 7: several shared_map_count directives in one location, none inherited when set
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c tinymap?space=32k;
--- config
shared_map_count c server;
location = /both {
    shared_map_count c "both:$uri";
    shared_map_count c total;
    return 204;
}
location = /plain { return 204; }
location = /v { shared_map_key c $arg_k; return 200 "[$shared_map_value]"; }
--- request eval
["GET /both", "GET /plain", "GET /both", "GET /v?k=both:/both", "GET /v?k=total", "GET /v?k=server"]
--- error_code eval
[204, 204, 204, 200, 200, 200]
--- response_body eval
["", "", "", "[2]", "[2]", "[3]"]



=== TEST 8: filling a two-entry map
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map tiny tinymap?space=32k&entries=2;
--- config
location = /t { shared_map_key tiny $arg_k; return 200 "[$shared_map_incr]"; }
--- request eval
["GET /t?k=a", "GET /t?k=b"]
--- response_body eval
["[1]", "[1]"]
--- no_error_log
[error]



=== TEST 9: a full map gives an empty value and one [error] line naming the map, never a failed request
--- request
GET /t?k=c
--- response_body: []
--- grep_error_log eval
qr/\[error\] .*shared map "tiny" is full, could not add "c"/
--- grep_error_log_out eval
qr/^[^\n]*shared map "tiny" is full, could not add "c"\n$/



=== TEST 10: keys already present still count in a full map
--- request
GET /t?k=a
--- response_body: [2]



=== TEST 11: a full map does not fail shared_map_count either
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map tiny1 tinymap?space=32k&entries=1;
--- config
shared_map_count tiny1 $uri;
location /x { return 200 "served"; }
--- request
GET /x/first
--- response_body: served



=== TEST 12: ... when the count cannot be stored, the request is still served
--- request
GET /x/second
--- response_body: served
--- wait: 0.2
--- error_log
shared map "tiny1" is full, could not add "/x/second"



=== TEST 13: a counter that holds a string is refused, not corrupted
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c13 tinymap?space=32k;
--- config
location = /t { shared_map_key c13 $arg_k; return 200 "[$shared_map_incr]"; }
--- request eval
["GET /t?k=n", "GET /t?k=n"]
--- response_body eval
["[1]", "[2]"]



=== TEST 14: read through nginx's cache, once across an internal redirect
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c14 tinymap?space=32k;
--- config
shared_map_key c14 counted;
location = /t { set $first $shared_map_incr; error_page 418 = /next; return 418; }
location = /next { return 200 "$first $shared_map_incr"; }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["1 1", "2 2"]



=== TEST 15: read by name only (SSI), still once per request
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map c15 tinymap?space=32k;
--- config
location = /t {
    shared_map_key c15 counted;
    ssi on;
    default_type text/html;
    return 200 '<!--# echo var="shared_map_incr" --> <!--# echo var="shared_map_incr" -->';
}
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["1 1", "2 2"]
