# A reload (HUP) keeps a map with a state file, and its old workers exiting
# after the reload never replace the file with an older snapshot.

use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapState qw(use_state_config);

# Blocks with `--- state_map` reload nginx (use_hup); see t/lib/SharedMapState.pm.
use_state_config();

use_hup();
master_on();
workers(2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: counts before a reload
--- state_map: r tinymap?space=64k r.state
--- request eval
["GET /incr?k=a", "GET /incr?k=a"]
--- response_body eval
["[1]\n", "[2]\n"]
--- no_error_log
[error]



=== TEST 2: after a reload the zone keeps its data and is not reloaded from the file
--- state_map: r tinymap?space=64k r.state
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
--- state_file: r.state
--- response_body
ok tinymap 2
a long 3 never
b long 1 never
