# The directives in stream {}: the errors of their http {} twins, in nginx's
# wording; one name is one zone across http {} and stream {}; a reload (HUP)
# keeps the data of maps defined in stream {}, and a map defined in stream {}
# with a state file is saved when nginx stops and loaded when it starts.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapStream;

no_shuffle();
no_long_string();
master_on();

use_stream_config();

# State files of maps defined in stream {}: a directory the workers (nobody) can write.
use File::Temp ();
$ENV{TEST_NGINX_STREAM_STATE} = File::Temp::tempdir(CLEANUP => 1);
chmod 0777, $ENV{TEST_NGINX_STREAM_STATE};
# For a stream {} written after http {} (--- post_main_config).
$ENV{TEST_NGINX_STREAM_PORT} = stream_port(1);

# `--- init` runs in package Test::Nginx::Util.
{
    no strict 'refs';
    *{"Test::Nginx::Util::$_"} = \&{"main::$_"} for qw(tcp_is api stream_port reload_nginx);
}

# HUP to the master, then waits until the new workers answer.
sub reload_nginx {
    my $pidfile = "$Test::Nginx::Util::ServRoot/logs/nginx.pid";
    open my $fh, '<', $pidfile or die "$pidfile: $!";
    chomp(my $pid = <$fh>);
    kill 'HUP', $pid or die "HUP: $!";
    select undef, undef, undef, 1.5;
}

run_tests();

__DATA__

=== TEST 1: an unknown map type, in nginx's wording
--- stream_config
    shared_map m treemap?space=1m;
--- must_die
--- error_log
unknown map type "treemap"

=== TEST 2: a zone too small
--- stream_config
    shared_map m tinymap?space=8k;
--- must_die
--- error_log
zone "m" is too small

=== TEST 3: an invalid parameter of shared_map
--- stream_config
    shared_map m tinymap?space=1m&foo=1;
--- must_die
--- error_log
invalid parameter "foo=1"

=== TEST 4: one name, one zone: a map defined in stream {} cannot be defined again in http {}
--- stream_config
    shared_map m tinymap?space=1m;
--- http_config
    shared_map m tinymap?space=1m;
--- must_die
--- error_log
shared_map "m" is already defined

=== TEST 5: a map defined twice in stream {}
--- stream_config
    shared_map m tinymap?space=1m;
    shared_map m tinymap?space=1m;
--- must_die
--- error_log
shared_map "m" is already defined

=== TEST 6: shared_map_incr needs map=
--- stream_config
    shared_map m tinymap?space=1m;
    shared_map_incr $remote_addr $c;
--- must_die
--- error_log
"shared_map_incr" must have "map" parameter

=== TEST 7: an invalid by= of shared_map_incr
--- stream_config
    shared_map m tinymap?space=1m;
    shared_map_incr $remote_addr $c map=m by=abc;
--- must_die
--- error_log
invalid parameter "by=abc"

=== TEST 8: a variable declared twice
--- stream_config
    shared_map m tinymap?space=1m;
    shared_map_var $remote_addr $v map=m;
    shared_map_incr $remote_addr $v map=m;
--- must_die
--- error_log
the duplicate "v" variable

=== TEST 9: a variable's map defined nowhere: nginx's own zone check
--- stream_config
    shared_map_var $remote_addr $v map=nope;
--- must_die
--- error_log
zero size shared memory zone "nope"

=== TEST 10: sync in stream {} needs shared_map_redis in http {}
--- stream_config
    shared_map m tinymap?space=1m&sync;
--- must_die
--- error_log
no "shared_map_redis" is defined for the shared map "m" with "sync"

=== TEST 11: shared_map_var is a stream main-level directive only
--- stream_config
    shared_map m tinymap?space=1m;
--- stream_server_config
    shared_map_var $remote_addr $v map=m;
--- must_die
--- error_log
"shared_map_var" directive is not allowed here

=== TEST 12: a reload keeps the counts of a map defined in stream {}
--- stream_config
    shared_map conns tinymap?space=1m;
    shared_map_incr $remote_addr $conn_count map=conns;
--- stream_server_config
    return "$conn_count\n";
--- init
tcp_is(1, "", "$_\n", "before the reload: $_") for 1 .. 2;
reload_nginx();
tcp_is(1, "", "3\n", "after the reload, counting goes on");
--- request
GET /api/conns?key=127.0.0.1
--- response_body chomp
3
--- error_log
reconfiguring
--- no_error_log
[error]

=== TEST 13: a map defined only in stream {} with a state file counts (saved when nginx stops)
--- stream_config
    shared_map saved tinymap?space=1m&state=$TEST_NGINX_STREAM_STATE/stream.state;
    shared_map_incr $remote_addr $n map=saved;
--- stream_server_config
    return "$n\n";
--- init
tcp_is(1, "", "$_\n", "session $_") for 1 .. 2;
--- request
GET /api/saved?key=127.0.0.1
--- response_body chomp
2
--- no_error_log
[error]

=== TEST 14: the next nginx loads the map from its state file (in HUP mode, the reload keeps it)
--- stream_config
    shared_map saved tinymap?space=1m&state=$TEST_NGINX_STREAM_STATE/stream.state;
    shared_map_incr $remote_addr $n map=saved;
--- stream_server_config
    return "$n\n";
--- init
tcp_is(1, "", "3\n", "counting goes on from the saved count");
--- request
GET /api/saved?key=127.0.0.1
--- response_body chomp
3
--- no_error_log
[error]

=== TEST 15: stream {} after http {}: its variables and counts use a map http {} defined
--- http_config
    shared_map conns tinymap?space=1m;
--- post_main_config
stream {
    shared_map_incr $remote_addr $n map=conns;
    shared_map_count conns "sessions";
    server { listen 127.0.0.1:$TEST_NGINX_STREAM_PORT; return "$n\n"; }
}
--- init
tcp_is(1, "", "$_\n", "session $_") for 1 .. 2;
--- request eval
["GET /api/conns?key=127.0.0.1", "GET /api/conns?key=sessions"]
--- response_body eval
["2", "2"]
--- no_error_log
[error]

=== TEST 16: stream {} after http {}: a variable's map defined nowhere, in the http wording
--- post_main_config
stream {
    shared_map_incr $remote_addr $n map=nope;
}
--- must_die
--- error_log
unknown shared_map "nope" in variable "$n"
