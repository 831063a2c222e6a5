# A reload (HUP) keeps the data of every map whose name, type and space are unchanged.
use Test::Nginx::Socket 'no_plan';

use_hup();
workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: count before the reload
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map kept tinymap?space=1m&entries=100;
shared_map resized hashmap?space=64k;
--- config
location = /t {
    shared_map_count kept k;
    shared_map_count resized k;
    return 204;
}
--- request eval
["GET /t", "GET /t", "GET /t"]
--- error_code eval
[204, 204, 204]



=== TEST 2: after a reload with a new location, the unchanged map kept its counts; the resized one started empty
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map kept tinymap?space=1m&entries=100;
shared_map resized hashmap?space=128k;
--- config
location = /kept { shared_map_key kept k; return 200 "[$shared_map_value]"; }
location = /resized { shared_map_key resized k; return 200 "[$shared_map_value]"; }
--- request eval
["GET /kept", "GET /resized"]
--- response_body eval
["[3]", "[]"]



=== TEST 3: a reload that changes a map's type with the same space is refused; the old configuration keeps serving
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map kept hashmap?space=1m&entries=100;
shared_map resized hashmap?space=128k;
--- config
location = /kept { shared_map_key kept k; return 200 "[$shared_map_value]"; }
--- reload_fails
--- request
GET /kept
--- response_body: [3]
--- error_log
shared_map "kept" uses "hashmap" with 100 entries while previously it used "tinymap" with 100 entries
