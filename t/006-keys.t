# A key that is a single variable ($uri, $arg_k, ${arg_k}) is read in place,
# without evaluating a complex value; it must mean exactly what the complex
# value means: the variable's current value, the empty key when it is unset.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

workers(1);
master_on();
no_shuffle();

use_default_config(
    http_config => 'shared_map c tinymap?space=1m&entries=100;',
    config => <<'_EOC_',
    location /u/ { shared_map_key c $uri; return 200 "$shared_map_incr"; }
    location = /old { rewrite ^ /new break; shared_map_count c $uri; }
    location = /a { shared_map_key c $arg_k; return 200 "$shared_map_incr"; }
    location = /b { shared_map_key c ${arg_k}; return 200 "$shared_map_incr"; }
    location = /complex { shared_map_key c "$arg_k"; return 200 "$shared_map_incr"; }
    location = /count { shared_map_count c $arg_k; return 200 "ok"; }
    location /api/ { shared_map_api; }
_EOC_
);

run_tests();

__DATA__

=== TEST 1: $uri, $arg_k and ${arg_k} name the same keys as a complex value would
--- request eval
["GET /u/x", "GET /u/x", "GET /a?k=/u/x", "GET /b?k=/u/x", "GET /complex?k=/u/x", "GET /api/c?key=/u/x"]
--- response_body eval
["1", "2", "3", "4", "5", "5"]



=== TEST 2: ... an unset variable is the empty key, as in a complex value
--- request eval
["GET /a", "GET /b?x=1", "GET /complex", "GET /count", "GET /api/c?key="]
--- response_body eval
["1", "2", "3", "ok", "4"]



=== TEST 3: ... $uri in the log phase is the URI after a rewrite (then no file: 404, counted all the same)
--- request eval
["GET /old", "GET /old", "GET /api/c?key=/new", "GET /api/c?key=/old"]
--- error_code eval
[404, 404, 200, 404]
--- response_body_like eval
["Not Found", "Not Found", "^2\\z", "^key not found"]
