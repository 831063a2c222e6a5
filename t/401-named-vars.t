# shared_map_var and shared_map_incr: any number of named lookups and counters
# per request, writable lookups, and their configuration errors.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

no_shuffle();
no_long_string();

our $HttpConfig = <<'_EOC_';
    shared_map m hashmap?space=1m;
    shared_map c tinymap?space=1m;
    shared_map_var $arg_k $v map=m;
    shared_map_var "user:$arg_u" $user_flag map=m;
    shared_map_incr $arg_k $hits map=c;
    shared_map_incr "by3:$arg_k" $hits3 map=c by=3 init=100;
    shared_map_incr "down:$arg_k" $left map=c by=-1 init=2;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; }
    location = /get { return 200 "[$v]"; }
    location = /set { set $v $arg_value; return 200 "[$v]"; }
    location = /both { return 200 "[$v][$user_flag]"; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);

run_tests();

__DATA__

=== TEST 1: reading a named variable looks its key up; absent is empty; reading changes nothing
--- request eval
["GET /get?k=a", "PUT /api/m?key=a\nhello", "GET /get?k=a", "GET /get?k=a", "GET /api/m?key=a"]
--- error_code eval
[200, 201, 200, 200, 200]
--- response_body eval
["[]", "", "[hello]", "[hello]", "hello"]



=== TEST 2: two lookups in one request, each with its own key and map
--- request eval
["PUT /api/m?key=x\nA", "PUT /api/m?key=user:bob\nbeta", "GET /both?k=x&u=bob", "GET /both?k=x&u=eve"]
--- error_code eval
[201, 201, 200, 200]
--- response_body eval
["", "", "[A][beta]", "[A][]"]



=== TEST 3: set stores a string with the map's timeout; set to "" removes the key
--- request eval
["GET /set?k=s&value=one", "GET /api/m?key=s", "GET /set?k=s&value=two", "GET /get?k=s",
 "GET /set?k=s&value=", "GET /api/m?key=s", "GET /get?k=s"]
--- error_code eval
[200, 200, 200, 200, 200, 404, 200]
--- response_body eval
["[one]", "one", "[two]", "[two]", "[]", "key not found\n", "[]"]



=== TEST 4: set takes the map's timeout
--- http_config
    shared_map m hashmap?space=1m&timeout=1s;
    shared_map_var $arg_k $v map=m;
--- config
    location /api/ { shared_map_api; }
    location = /set { set $v $arg_value; return 200 "[$v]"; }
--- request eval
["GET /set?k=t&value=x", "GET /api/m?key=t"]
--- response_body eval
["[x]", "x"]



=== TEST 5: ... past the map's timeout the key is gone
--- init
sleep 3;
--- request
GET /api/m?key=t
--- error_code: 404



=== TEST 6: a value is escaped as $shared_map_value is
--- request eval
["PUT /api/m?key=e\na\r\nb%", "GET /get?k=e"]
--- error_code eval
[201, 200]
--- response_body eval
["", "[a%0D%0Ab%25]"]



=== TEST 7: a named counter counts once per request however often it is read
--- config
    location /api/ { shared_map_api; }
    location = /t { add_header X-Hits $hits; return 200 "$hits $hits"; }
--- request eval
["GET /t?k=a", "GET /t?k=a", "GET /api/c?key=a"]
--- response_body eval
["1 1", "2 2", "2"]
--- response_headers eval
["X-Hits: 1", "X-Hits: 2", ""]



=== TEST 8: by, init and negative steps; several counters in one request
--- config
    location = /t { return 200 "$hits $hits3 $left $hits3"; }
--- request eval
["GET /t?k=q", "GET /t?k=q", "GET /t?k=q", "GET /t?k=q"]
--- response_body eval
["1 103 1 103", "2 106 0 106", "3 109 -1 109", "4 112 -2 112"]



=== TEST 9: ttl restarts an expired counter from init
--- http_config
    shared_map c tinymap?space=1m;
    shared_map_incr $arg_k $n map=c ttl=1s init=10;
--- config
    location = /t { return 200 "$n"; }
--- request eval
["GET /t?k=x", "GET /t?k=x"]
--- response_body eval
["11", "12"]



=== TEST 10: ... past its ttl the counter starts again from init
--- init
sleep 3;
--- request
GET /t?k=x
--- response_body: 11



=== TEST 11: once across internal redirects (error_page, rewrite ... last)
--- config
    location = /t { set $first $hits; error_page 418 = /next; return 418; }
    location = /next { rewrite ^ /last last; }
    location = /last { return 200 "$first $hits"; }
--- request eval
["GET /t?k=r", "GET /t?k=r"]
--- response_body eval
["1 1", "2 2"]



=== TEST 12: read by name only (SSI), in the request and its subrequests, still once
--- http_config
    shared_map c tinymap?space=1m;
    shared_map_incr "fixed" $byname map=c;
--- config
    location = /t {
        ssi on;
        default_type text/html;
        return 200 '<!--# echo var="byname" --> <!--# include virtual="/sub" --> <!--# echo var="byname" -->';
    }
    location = /sub { error_page 418 = /sub2; return 418; }
    location = /sub2 {
        ssi on;
        default_type text/html;
        return 200 '<!--# echo var="byname" -->';
    }
--- request eval
["GET /t", "GET /t"]
--- response_body eval
["1 1 1", "2 2 2"]



=== TEST 13: a refused count yields an empty value and one error line
--- http_config
    shared_map c tinymap?space=1m;
    shared_map_incr $arg_k $n map=c;
--- config
    location /api/ { shared_map_api; }
    location = /t { return 200 "[$n]"; }
--- request
PUT /api/c?key=s
text
--- error_code: 201



=== TEST 14: ... then the counter is refused
--- request
GET /t?k=s
--- response_body: []
--- error_log
shared map "c": "s" holds a string, not a number



=== TEST 15: $shared_map_incr, $shared_map_value and shared_map_key are unchanged next to them
--- config
    location = /t { shared_map_key c $arg_k; return 200 "$shared_map_incr $shared_map_value $hits"; }
--- request eval
["GET /t?k=z", "GET /t?k=z"]
--- response_body eval
["1 1 2", "3 3 4"]



=== TEST 16: a variable declared twice
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_var $arg_k $v map=m;
    shared_map_incr $arg_k $V map=m;
--- config
--- must_die
--- error_log
the duplicate "V" variable



=== TEST 17: set on a counter variable
--- http_config
    shared_map c hashmap?space=1m;
    shared_map_incr $arg_k $n map=c;
--- config
    location = /t { set $n 1; return 200; }
--- must_die
--- error_log
the duplicate "n" variable



=== TEST 18: a name nginx already uses
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_var $arg_k $uri map=m;
--- config
--- must_die
--- error_log
the duplicate "uri" variable



=== TEST 19: an unknown map
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_var $arg_k $v map=nope;
--- config
--- must_die
--- error_log
unknown shared_map "nope" in variable "$v"



=== TEST 20: a missing map parameter
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_incr $arg_k $v by=2;
--- config
--- must_die
--- error_log
"shared_map_incr" must have "map" parameter



=== TEST 21: bad parameters
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_incr $arg_k $v map=m by=1.5;
--- config
--- must_die
--- error_log
invalid parameter "by=1.5"



=== TEST 22: a counter's parameters on a lookup
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_var $arg_k $v map=m ttl=1s;
--- config
--- must_die
--- error_log
invalid parameter "ttl=1s"



=== TEST 23: a duplicate parameter and a bad variable name
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_incr $arg_k $v map=m map=m;
--- config
--- must_die
--- error_log
duplicate parameter "map"



=== TEST 24: a variable name without $
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_var $arg_k v map=m;
--- config
--- must_die
--- error_log
invalid variable name "v"



=== TEST 25: only at the http level
--- http_config
    shared_map m hashmap?space=1m;
--- config
    location = /t { shared_map_var $arg_k $v map=m; return 200; }
--- must_die
--- error_log
"shared_map_var" directive is not allowed here



=== TEST 26: held up (issue 20): a counter counts once through try_files, and with a mirror reading it too
--- config
    location /api/ { shared_map_api; }
    location = /tf { set $first $hits; try_files /nonexistent @named; }
    location @named { return 200 "$first $hits"; }
    location = /mirrored { mirror /mirror; return 200 "$hits"; }
    location = /mirror { internal; return 200 "$hits"; }
--- request eval
["GET /tf?k=tf", "GET /tf?k=tf", "GET /api/c?key=tf", "GET /mirrored?k=mm", "GET /mirrored?k=mm", "GET /api/c?key=mm"]
--- response_body eval
["1 1", "2 2", "2", "1", "2", "2"]
