# shared_map_redis and the sync parameter: what nginx -t accepts and refuses.
use Test::Nginx::Socket 'no_plan';

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a synced map with shared_map_redis loads and counts locally
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map_redis 127.0.0.1:1 db=2 password=secret prefix=site;
shared_map m tinymap?space=64k&sync;
--- config
location = /t { shared_map_key m k; return 200 "$shared_map_incr"; }
--- request
GET /t
--- response_body: 1



=== TEST 2: shared_map_redis may follow the map, and takes a unix socket and a default port
(The map has a name of its own: in Test::Nginx's HUP mode this block reloads
TEST 1's nginx, which refuses to make its tinymap "m" a hashmap.)
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m2 hashmap?space=64k&timeout=1h&evict&sync;
shared_map_redis unix:/run/redis/redis.sock;
--- config
location = /t { shared_map_key m2 k; return 200 "$shared_map_incr"; }
--- request
GET /t
--- response_body: 1



=== TEST 3: sync without shared_map_redis stops nginx -t
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map plain tinymap?space=64k;
shared_map m tinymap?space=64k&sync;
--- config
--- must_die
--- error_log
no "shared_map_redis" is defined for the shared map "m" with "sync"



=== TEST 4: shared_map_redis without sync maps is accepted
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map_redis 127.0.0.1:1;
shared_map m tinymap?space=64k;
--- config
location = /t { shared_map_key m k; return 200 "$shared_map_incr"; }
--- request
GET /t
--- response_body: 1



=== TEST 5: sync takes no value
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map_redis 127.0.0.1:6379;
shared_map m tinymap?space=64k&sync=on;
--- config
--- must_die
--- error_log
invalid parameter "sync=on"



=== TEST 6: shared_map_redis is given once
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map_redis 127.0.0.1:6379;
shared_map_redis 127.0.0.1:6380;
--- config
--- must_die
--- error_log
"shared_map_redis" directive is duplicate



=== TEST 7: an invalid port
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map_redis 127.0.0.1:99999;
--- config
--- must_die
--- error_log
invalid port in "127.0.0.1:99999"



=== TEST 8: an unknown parameter
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map_redis 127.0.0.1 timeout=1s;
--- config
--- must_die
--- error_log
invalid parameter "timeout=1s"



=== TEST 9: an invalid db
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map_redis 127.0.0.1 db=x;
--- config
--- must_die
--- error_log
invalid db "x"



=== TEST 10: shared_map_redis belongs to the http level
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
--- config
location = /t { shared_map_redis 127.0.0.1; }
--- must_die
--- error_log
"shared_map_redis" directive is not allowed here
