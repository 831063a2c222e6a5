# Replication through Redis of maps used by stream {}: two nginx hosts count
# TCP connections, one in a map with `sync` defined in stream {}, one in a map
# with `sync` defined in http {}; both converge to the exact sum on both hosts.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapHosts;
use SharedMapStream qw(tcp_session);

if (!redis_bin()) {
    plan skip_all => 'redis-server is not installed (apt-get install redis-server)' unless $ENV{CI};
    fail('redis-server is installed');
    done_testing();
    exit;
}

setup('stream-sync');
start_redis();
my $rport = redis_port();
# A stream server per host at port + 30 + N (tcp_session's port + N counts from
# the test port).
sub stream_of { 30 + $_[0] }
for my $h (1, 2) {
    my $sp = ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + stream_of($h);
    start_host($h, <<"_HTTP_", '', <<"_STREAM_");
    shared_map_redis 127.0.0.1:$rport prefix=t504;
    shared_map fromhttp tinymap?space=1m&sync;
_HTTP_
stream {
    shared_map fromstream tinymap?space=1m&sync;
    shared_map_incr \$remote_addr \$a map=fromstream;
    shared_map_count fromhttp "sessions";
    server { listen 127.0.0.1:$sp; return "\$a\\n"; }
}
_STREAM_
}
my @both = (1, 2);

is(tcp_session(stream_of(1)), "$_\n", "host 1, TCP session $_") for 1 .. 3;
ok(defined converge('fromstream', '127.0.0.1', '3', 10, \@both), "host 1's sessions reach host 2");
is(tcp_session(stream_of(2)), "$_\n", "host 2 counts on from them: $_") for 4 .. 5;

ok(defined converge('fromstream', '127.0.0.1', '5', 10, \@both),
    'a map defined in stream {} converges to the sum on both hosts') or diag(values_of('fromstream', '127.0.0.1', \@both));
ok(defined converge('fromhttp', 'sessions', '5', 10, \@both),
    'a map defined in http {} and counted by stream {} converges too') or diag(values_of('fromhttp', 'sessions', \@both));
like(sync_of(1, 'fromstream'), qr/"connected":true/, 'the stream map reports its replication');

stop_host($_) for @both;
kill_redis();
done_testing();
