# Sessions expire after `timeout` without use, and every use renews them.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

workers(2);
master_on();
no_shuffle();

share_with_init(qw(call new_sid is ok));

# Two sessions at most, no eviction: a third needs the room of an expired one.
use_default_config(http_config => '    shared_map sessions hashmap?space=64k&entries=2;', config => <<'_EOC_');
    shared_map_session sessions timeout=2s;
    location = /session {
        shared_map_session_api write;
    }
    location = /static {
        return 200 "ok\n";
    }
_EOC_

run_tests();

__DATA__

=== TEST 1: a session used every second outlives its 2s timeout, whatever the request
--- init
my $sid = new_sid(call(PUT => '/session', undef, 'a')) or die 'no session';
sleep 1;
is call(GET => '/session', $sid)->{content}, 'a', 'alive after 1s';
sleep 1;
is call(GET => '/static', $sid)->{content}, "ok\n", 'any request in the context uses the session';
sleep 1;
is call(GET => '/session', $sid)->{content}, 'a', 'alive after 3s: the request at 2s renewed it';
call(DELETE => '/session', $sid);
--- request
GET /session
--- error_code: 404



=== TEST 2: an idle session expires, and its entry is removed
--- init
my @sids = map { new_sid(call(PUT => '/session', undef, "s$_")) } 1 .. 2;
ok $sids[0] && $sids[1], 'two sessions fill the map';
is call(PUT => '/session', undef, 's3')->{status}, 507, 'a third does not fit';
sleep 3;
is call(GET => '/session', $sids[0])->{status}, 404, 'idle for 3s: expired';
ok new_sid(call(PUT => '/session', undef, "s$_")), "new session $_ fits: the expired ones left"
    for 4 .. 5;
--- request
GET /session
--- error_code: 404
--- error_log
shared map "sessions" is full, could not store session data of 2 bytes
