# Persistence: `state=path` saves a map while it changes and when nginx stops,
# and loads it when nginx starts. A corrupt file is renamed aside; a file that
# does not fit loads what fits.

# These blocks stop and start nginx: a map is loaded when nginx starts and saved
# when it stops. Test::Nginx's HUP mode never stops nginx, so the file is skipped
# there (t/304-state-reload.t is about reloads).
our $SkipReason;
BEGIN {
    $SkipReason = "state files across stops and starts; HUP mode only reloads" if $ENV{TEST_NGINX_USE_HUP};
}

use Test::Nginx::Socket $SkipReason ? (skip_all => $SkipReason) : 'no_plan';
use File::Copy qw(copy);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapState qw(state_file use_state_config put_state_file);

# Blocks with `--- state_map` start nginx anew; see t/lib/SharedMapState.pm.
my $dir = use_state_config();

put_state_file('garbage.state', "this is not a state file\n");
{
    my $valid = state_file(2, ['a', 1, 1, 0], ['b', 1, 2, 0]);
    put_state_file('truncated.state', substr($valid, 0, length($valid) - 7));
}
put_state_file('small.state', state_file(1, map { ["k$_", 1, $_, 0] } 0 .. 9));

# Clients writing while the map is saved: 4 processes, 250 counts each over
# five keys, about 2.5 s in all; a copy of the state file is taken midway.
sub busy_clients {
    require HTTP::Tiny;
    require POSIX;
    my @pids;
    for my $c (1 .. 4) {
        my $pid = fork;
        die "fork: $!" if !defined $pid;
        if (!$pid) {
            my $http = HTTP::Tiny->new(keep_alive => 1);
            for my $i (0 .. 249) {
                my $k = 'k' . ($i % 5);
                $http->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/incr?k=$k");
                select(undef, undef, undef, 0.008);
            }
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    select(undef, undef, undef, 1.6);
    copy("$dir/busy.state", "$dir/snapshot.state") or die "copy: $!";
    waitpid($_, 0) for @pids;
}

master_on();
workers(2);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: counts are written to a map with a state file (none exists yet)
--- state_map: counts tinymap?space=64k&entries=100 counts.state
--- request eval
["GET /incr?k=a", "GET /incr?k=a", "GET /incr?k=a", "GET /incr?k=b"]
--- response_body eval
["[1]\n", "[2]\n", "[3]\n", "[1]\n"]
--- no_error_log
[error]
[warn]



=== TEST 2: while nginx runs, the changed map is saved within about a second
--- init
sleep 2;
--- state_file: counts.state
--- response_body
ok tinymap 2
a long 3 never
b long 1 never



=== TEST 3: after a stop and a start, the counts are back
--- state_map: counts tinymap?space=64k&entries=100 counts.state
--- request
GET /value?k=a
--- response_body
[3]
--- error_log
shared map "counts": loaded 2 entries from
--- no_error_log
[error]



=== TEST 4: counting goes on from there, right before a stop
--- request eval
["GET /value?k=b", "GET /incr?k=a", "GET /incr?k=c"]
--- response_body eval
["[1]\n", "[4]\n", "[1]\n"]



=== TEST 5: writes made just before a stop are saved at the stop
--- state_map: counts tinymap?space=64k&entries=100 counts.state
--- request eval
["GET /value?k=a", "GET /value?k=b", "GET /value?k=c"]
--- response_body eval
["[4]\n", "[1]\n", "[1]\n"]
--- no_error_log
[error]



=== TEST 6: a corrupt state file is logged and renamed aside, and the map starts empty
--- state_map: g tinymap?space=64k garbage.state
--- request
GET /value?k=a
--- response_body
[]
--- error_log eval
qr/\[error\] .*shared map "g": invalid state file ".*garbage\.state": not a shared map state file, renamed to ".*garbage\.state\.corrupt-\d+"; the map starts empty/



=== TEST 7: the corrupt file is kept aside for inspection
--- request
GET /state/
--- response_body_like eval
qr/garbage\.state\.corrupt-\d+/



=== TEST 8: a truncated state file fails its checksum
--- state_map: t tinymap?space=64k truncated.state
--- request
GET /value?k=a
--- response_body
[]
--- error_log eval
qr/\[error\] .*invalid state file ".*truncated\.state": checksum mismatch, renamed to ".*truncated\.state\.corrupt-\d+"/



=== TEST 9: a file saved by a bigger tinymap loads what fits into a small hashmap
--- state_map: s hashmap?space=64k&entries=4&evict small.state
--- request
GET /value?k=none
--- response_body
[]
--- error_log
state file "
small.state" was saved by a tinymap, loading it into a hashmap
shared map "s": 6 of 10 entries in "
small.state" were not loaded: 6 found no room, 0 are too large for a hashmap
shared map "s": loaded 4 entries from
--- no_error_log
[error]



=== TEST 10: a state file is saved while clients keep writing
--- state_map: busy hashmap?space=256k busy.state
--- init
main::busy_clients();
--- request eval
["GET /value?k=k0", "GET /value?k=k4"]
--- response_body eval
["[200]\n", "[200]\n"]
--- no_error_log
[error]



=== TEST 11: the copy taken while clients wrote is a whole, consistent file
--- state_file: snapshot.state
--- response_body_like eval
qr/^ok hashmap 5\n(?:k\d long \d+ never\n){5}\z/



=== TEST 12: nginx starts from that snapshot
--- state_map: busy hashmap?space=256k snapshot.state
--- request
GET /value?k=k2
--- response_body_like eval
qr/^\[\d+\]\n\z/
--- error_log
shared map "busy": loaded 5 entries from
--- no_error_log
[error]



=== TEST 13: and the file saved when the writing nginx stopped holds every count
--- state_map: busy hashmap?space=256k busy.state
--- request eval
["GET /value?k=k0", "GET /value?k=k1", "GET /value?k=k2", "GET /value?k=k3", "GET /value?k=k4"]
--- response_body eval
["[200]\n", "[200]\n", "[200]\n", "[200]\n", "[200]\n"]
--- no_error_log
[error]
