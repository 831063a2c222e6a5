# A reload (HUP) keeps a map with a state file, and its old workers exiting
# after the reload never replace the file with an older snapshot.

use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapState qw(describe);

$ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);

use_hup();
master_on();
workers(2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: counts before a reload
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map r tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/r.state;
--- config
location /incr { shared_map_key r $arg_k; return 200 "[$shared_map_incr]\n"; }
location /state/ { alias $TEST_NGINX_STATE_DIR/; }
--- request eval
["GET /incr?k=a", "GET /incr?k=a"]
--- response_body eval
["[1]\n", "[2]\n"]
--- no_error_log
[error]



=== TEST 2: after a reload the zone keeps its data and is not reloaded from the file
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map r tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/r.state;
--- config
# reloaded
location /incr { shared_map_key r $arg_k; return 200 "[$shared_map_incr]\n"; }
location /state/ { alias $TEST_NGINX_STATE_DIR/; }
--- request eval
["GET /incr?k=a", "GET /incr?k=b"]
--- response_body eval
["[3]\n", "[1]\n"]
--- no_error_log
[error]
loaded



=== TEST 3: the file holds the newest counts once the old workers are gone
--- init
sleep 2;
--- request
GET /state/r.state
--- response_body_filters eval
\&SharedMapState::describe
--- response_body
ok tinymap 2
a long 3 never
b long 1 never
