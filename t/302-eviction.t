# Eviction: a full map with `evict` drops its least recently used entries to
# admit new ones; reads count as use. Without `evict` a write fails cleanly.

use Test::Nginx::Socket 'no_plan';

master_on();
workers(2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a map with evict fills up to its entries limit
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map lru tinymap?space=64k&entries=4&evict;
--- config
location /incr { shared_map_key lru $arg_k; return 200 "[$shared_map_incr]\n"; }
location /value { shared_map_key lru $arg_k; return 200 "[$shared_map_value]\n"; }
--- request eval
["GET /incr?k=k1", "GET /incr?k=k2", "GET /incr?k=k3", "GET /incr?k=k4"]
--- response_body eval
["[1]\n", "[1]\n", "[1]\n", "[1]\n"]
--- no_error_log
[error]



=== TEST 2: reading the oldest entry makes it recently used
--- request
GET /value?k=k1
--- response_body
[1]



=== TEST 3: new keys are always admitted
--- request eval
["GET /incr?k=k5", "GET /incr?k=k6"]
--- response_body eval
["[1]\n", "[1]\n"]
--- no_error_log
[error]



=== TEST 4: the least recently used entries were evicted, the read one kept
--- request eval
["GET /value?k=k1", "GET /value?k=k2", "GET /value?k=k3", "GET /value?k=k4", "GET /value?k=k5", "GET /value?k=k6"]
--- response_body eval
["[1]\n", "[]\n", "[]\n", "[1]\n", "[1]\n", "[1]\n"]
--- no_error_log
[error]



=== TEST 5: a hashmap with evict keeps a hot key while many new ones pass through
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map lruh hashmap?space=64k&entries=8&evict;
--- config
location /incr { shared_map_key lruh $arg_k; return 200 "[$shared_map_incr]\n"; }
location /value { shared_map_key lruh $arg_k; return 200 "[$shared_map_value]\n"; }
--- request eval
[map { ("GET /incr?k=new$_", "GET /value?k=new1") } 1 .. 30]
--- response_body eval
[map { ("[1]\n", "[1]\n") } 1 .. 30]
--- no_error_log
[error]



=== TEST 6: without evict, shared_map_count on a full map logs an error and the request still succeeds
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map small tinymap?space=64k&entries=2;
--- config
location /p/ { shared_map_count small $uri; return 200 "ok\n"; }
location = /value { shared_map_key small $arg_k; return 200 "[$shared_map_value]\n"; }
--- request eval
["GET /p/a", "GET /p/b", "GET /p/a", "GET /value?k=/p/a", "GET /value?k=/p/b"]
--- response_body eval
["ok\n", "ok\n", "ok\n", "[2]\n", "[1]\n"]
--- no_error_log
[error]



=== TEST 7: the third key is refused with an error line naming the map
--- request
GET /p/c
--- response_body
ok
--- error_log
shared map "small" is full, could not add "/p/c"



=== TEST 8: and nothing else changed
--- request eval
["GET /value?k=/p/a", "GET /value?k=/p/b", "GET /value?k=/p/c"]
--- response_body eval
["[2]\n", "[1]\n", "[]\n"]



=== TEST 9: fragmentation: small entries fill the space, evicting makes room for more of them
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map frag tinymap?space=256k&entries=4000&evict;
--- config
large_client_header_buffers 4 32k;
location /incr { shared_map_key frag $arg_k; return 200 "[$shared_map_incr]\n"; }
location /value { shared_map_key frag $arg_k; return 200 "[$shared_map_value]\n"; }
--- init
require HTTP::Tiny;
my $http = HTTP::Tiny->new(keep_alive => 1);
for my $i (1 .. 1800) {
    my $r = $http->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/incr?k=" . sprintf("%0100d", $i));
    die "request $i: $r->{status}" if $r->{content} ne "[1]\n";
}
--- request eval
"GET /value?k=" . sprintf("%0100d", 1800)
--- response_body
[1]
--- no_error_log
[error]



=== TEST 10: a key needing whole pages among them fails after bounded eviction, and says so
--- request eval
"GET /incr?k=" . ("x" x 16384)
--- response_body
[]
--- error_log eval
qr/\[error\] .*shared map "frag" is full: could not allocate 16416 bytes after evicting 512 entries, could not add "x{64}\.\.\."/
