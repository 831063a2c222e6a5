# Expiry: the map's timeout, per-key expiry times, and expired entries making
# room on a full map without anything reading them.

use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapState qw(state_file);

$ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);

# Per-key expiry times: "soon" in 2 s, "later" in an hour, "never", and
# "past" already expired.
{
    my $now = time;
    open my $f, '>', "$ENV{TEST_NGINX_STATE_DIR}/ttl.state" or die $!;
    binmode $f;
    print $f state_file(1, ['soon', 1, 10, $now + 2], ['later', 1, 20, $now + 3600],
                        ['never', 1, 30, 0], ['past', 1, 40, $now - 5]);
    close $f;
}

master_on();
workers(2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: per-key expiry times are kept, and entries expired meanwhile are not loaded
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map t hashmap?space=64k&entries=100&state=$TEST_NGINX_STATE_DIR/ttl.state;
--- config
location /value { shared_map_key t $arg_k; return 200 "[$shared_map_value]\n"; }
--- request
GET /value?k=soon
--- response_body
[10]
--- error_log
shared map "t": loaded 3 entries from
1 expired meanwhile
--- no_error_log
[error]



=== TEST 2: the other loaded entries
--- request eval
["GET /value?k=later", "GET /value?k=never", "GET /value?k=past"]
--- response_body eval
["[20]\n", "[30]\n", "[]\n"]
--- no_error_log
[error]



=== TEST 3: a per-key expiry time passes while the map's timeout is never
--- init
sleep 3;
--- request eval
["GET /value?k=soon", "GET /value?k=later", "GET /value?k=never"]
--- response_body eval
["[]\n", "[20]\n", "[30]\n"]
--- no_error_log
[error]



=== TEST 4: a counter lives until its timeout
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m tinymap?space=64k&entries=100&timeout=2s;
--- config
location /incr { shared_map_key m $arg_k; return 200 "$shared_map_incr\n"; }
location /value { shared_map_key m $arg_k; return 200 "[$shared_map_value]\n"; }
--- request eval
["GET /incr?k=c", "GET /incr?k=c", "GET /value?k=c"]
--- response_body eval
["1\n", "2\n", "[2]\n"]
--- no_error_log
[error]



=== TEST 5: past its timeout it is never returned, and counting starts again
--- init
sleep 3;
--- request eval
["GET /value?k=c", "GET /incr?k=c", "GET /value?k=c"]
--- response_body eval
["[]\n", "1\n", "[1]\n"]
--- no_error_log
[error]



=== TEST 6: a map at its entries limit
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map full tinymap?space=64k&entries=4&timeout=1s;
--- config
location /incr { shared_map_key full $arg_k; return 200 "[$shared_map_incr]\n"; }
--- request eval
["GET /incr?k=a", "GET /incr?k=b", "GET /incr?k=c", "GET /incr?k=d", "GET /incr?k=a"]
--- response_body eval
["[1]\n", "[1]\n", "[1]\n", "[1]\n", "[2]\n"]
--- no_error_log
[error]



=== TEST 7: without evict, a new key is refused with an error and nothing else changes
--- request
GET /incr?k=e
--- response_body
[]
--- error_log
shared map "full" is full, could not add "e"



=== TEST 8: once its entries expire, the full map takes new keys without the old ones being read
--- init
sleep 3;
--- request eval
["GET /incr?k=f", "GET /incr?k=g", "GET /incr?k=h", "GET /incr?k=i", "GET /incr?k=f"]
--- response_body eval
["[1]\n", "[1]\n", "[1]\n", "[1]\n", "[2]\n"]
--- no_error_log
could not add "f"
could not add "g"
could not add "h"
could not add "i"
