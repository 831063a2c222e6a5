# The shared_map directive: every good and bad specification.
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);

$ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the documented tinymap example loads
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map uri_access_counters tinymap?space=1m&entries=8096;
--- config
location = /t { shared_map_key uri_access_counters $uri; return 200 "$shared_map_incr"; }
--- request
GET /t
--- response_body: 1



=== TEST 2: a hashmap with every parameter loads
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m hashmap?space=64k&entries=100&timeout=1h&evict&state=$TEST_NGINX_STATE_DIR/m.state;
--- config
location = /t { shared_map_key m k; return 200 "$shared_map_incr"; }
--- request
GET /t
--- response_body: 1



=== TEST 3: entries defaults from space
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=32k;
--- config
location = /t { shared_map_key m k; return 200 "$shared_map_incr"; }
--- request
GET /t
--- response_body: 1



=== TEST 4: unknown map type
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m treemap?space=1m;
--- config
--- must_die
--- error_log
unknown map type "treemap"



=== TEST 5: unknown parameter
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=1m&foo=1;
--- config
--- must_die
--- error_log
invalid parameter "foo=1"



=== TEST 6: bad zone size
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=abc;
--- config
--- must_die
--- error_log
invalid zone size "abc"



=== TEST 7: zone below 8 pages
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=16k;
--- config
--- must_die
--- error_log
zone "m" is too small



=== TEST 8: space is required
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?entries=10;
--- config
--- must_die
--- error_log
shared_map "m" must have "space" parameter



=== TEST 9: a map defined twice
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=1m;
shared_map m tinymap?space=1m;
--- config
--- must_die
--- error_log
shared_map "m" is already defined



=== TEST 10: bad entries
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=1m&entries=-5;
--- config
--- must_die
--- error_log
invalid number of entries "-5"



=== TEST 11: bad timeout
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=1m&timeout=soon;
--- config
--- must_die
--- error_log
invalid timeout "soon"



=== TEST 12: evict takes no value
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=1m&evict=yes;
--- config
--- must_die
--- error_log
invalid parameter "evict=yes"



=== TEST 13: a tinymap cannot address more than 4g
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=5g;
--- config
--- must_die
--- error_log
zone "m" is too large



=== TEST 14: more entries than the space can hold buckets for
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=64k&entries=100000;
--- config
--- must_die
--- error_log
zone "m" is too small for 100000 entries



=== TEST 15: a repeated parameter
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=1m&space=2m;
--- config
--- must_die
--- error_log
duplicate parameter "space"



=== TEST 16: shared_map outside http
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
--- config
location = /t { shared_map m tinymap?space=1m; return 200; }
--- must_die
--- error_log
"shared_map" directive is not allowed here



=== TEST 17: a key naming a map that is never defined
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
--- config
location = /t { shared_map_key nosuchmap $uri; return 200 "$shared_map_incr"; }
--- must_die
--- error_log
zero size shared memory zone "nosuchmap"



=== TEST 18: a map may be defined after the key that uses it
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
server { listen 127.0.0.1:$TEST_NGINX_RAND_PORT_1; shared_map_key later $uri; }
shared_map later tinymap?space=32k;
--- config
location = /t { shared_map_key later $uri; return 200 "$shared_map_incr"; }
--- request
GET /t
--- response_body: 1



=== TEST 19: the map name collides with another module's zone
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
limit_req_zone $binary_remote_addr zone=z:1m rate=1r/s;
shared_map z tinymap?space=1m;
--- config
--- must_die
--- error_log
the shared memory zone "z" is already declared for a different use
