# The maps in stream {}: shared_map_incr, shared_map_var and shared_map_count
# for TCP and UDP sessions, one zone per name with http {}.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapStream;

no_shuffle();
no_long_string();
master_on();
workers(2);

use_stream_config();

# `--- init` runs in package Test::Nginx::Util.
{
    no strict 'refs';
    *{"Test::Nginx::Util::$_"} = \&{"main::$_"} for qw(tcp_is udp_is api stream_port);
}

run_tests();

__DATA__

=== TEST 1: an incr variable counts each TCP session once, however often it is read; the HTTP API reads the count
--- stream_config
    shared_map conns tinymap?space=1m;
    shared_map_incr $remote_addr $conn_count map=conns;
--- stream_server_config
    return "$conn_count $conn_count $conn_count\n";
--- init
tcp_is(1, "", "$_ $_ $_\n", "TCP session $_") for 1 .. 3;
--- request
GET /api/conns?key=127.0.0.1
--- response_body chomp
3
--- no_error_log
[error]

=== TEST 2: a map defined in http {} is counted from stream {}; a lookup in stream sees what the API wrote, at the next connection
--- http_config
    shared_map conns tinymap?space=1m;
    shared_map flags hashmap?space=1m;
--- stream_config
    shared_map_incr "$server_port:$remote_addr" $conn_count map=conns by=2 init=10;
    shared_map_var  $remote_addr $flag map=flags;
--- stream_server_config
    return "[$conn_count][$flag]";
--- init
tcp_is(1, "", "[12][]", "before the write");
api(PUT => "flags?key=127.0.0.1", "blocked");
tcp_is(1, "", "[14][blocked]", "after the write");
--- request eval
"GET /api/conns?key=" . main::stream_port(1) . ":127.0.0.1"
--- response_body chomp
14
--- no_error_log
[error]

=== TEST 3: a map defined only in stream {} is listed and served by the HTTP API, and usable from http {}
--- stream_config
    shared_map streamonly hashmap?space=1m;
    shared_map_var $remote_addr $v map=streamonly;
--- stream_server_config
    return "[$v]";
--- http_config
    shared_map_var $arg_k $httpv map=streamonly;
--- config
    location = /h { return 200 "[$httpv]"; }
--- init
api(PUT => "streamonly?key=127.0.0.1", "hello");
tcp_is(1, "", "[hello]", "stream reads what the API wrote");
--- request eval
["GET /h?k=127.0.0.1", "GET /api/streamonly?key=127.0.0.1", "GET /api/"]
--- response_body_like eval
['^\[hello\]$', '^hello$', '"name":"streamonly"']
--- no_error_log
[error]

=== TEST 4: shared_map_count counts every session in stream's log phase, per server, whether or not anything reads a variable
--- stream_config
    shared_map sessions tinymap?space=1m;
    shared_map_count sessions "all";
--- stream_server_config
    shared_map_count sessions "s1:$remote_addr";
    return "ok";
--- stream_server_config2
    return "ok2";
--- init
tcp_is(1, "", "ok", "server 1") for 1 .. 2;
tcp_is(2, "", "ok2", "server 2");
--- request eval
["GET /api/sessions?key=s1:127.0.0.1", "GET /api/sessions?key=all"]
--- response_body eval
["2", "1"]
--- no_error_log
[error]

=== TEST 5: UDP: each datagram's session counts once, in its variable and in the log phase
--- stream_config
    shared_map udp tinymap?space=1m;
    shared_map_incr "udp:$remote_addr" $n map=udp;
    shared_map_count udp "logged";
--- stream_server_config
    listen 127.0.0.1:$TEST_NGINX_SERVER_PORT udp;
    return "$n:$n";
--- init
udp_is(0, "ping", "$_:$_", "UDP datagram $_") for 1 .. 3;
--- request eval
["GET /api/udp?key=udp:127.0.0.1", "GET /api/udp?key=logged"]
--- response_body eval
["3", "3"]
--- no_error_log
[error]
