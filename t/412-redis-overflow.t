# Replicated numbers that would overflow, through a real redis-server and two
# nginx hosts: an addition that takes an int beyond 32 bits or a long beyond
# 64 bits in Redis is refused there as a local one is, never wrapped, every
# host converges to the value Redis keeps, and the other changes of the
# refused addition's batch still reach every host.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(sleep);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapHosts;

if (!redis_bin()) {
    plan skip_all => 'redis-server is not installed (apt-get install redis-server)' unless $ENV{CI};
    fail('redis-server is installed');
    done_testing();
    exit;
}

setup('redis-overflow');
start_redis();
my $rport = redis_port();
my $maps = <<"_EOC_";
    shared_map_redis 127.0.0.1:$rport prefix=t412;
    shared_map c tinymap?space=1m&entries=1000&sync;
    shared_map big hashmap?space=1m&sync;
_EOC_
start_host($_, $maps) for 1, 2;
my @both = (1, 2);

# Both hosts add to a number while Redis is stopped, each with 20 changes of
# other keys in the same batch; Redis applies one host's batch, then refuses
# the other's addition.
sub add_on_both_while_stopped {
    my ($key, $by) = @_;
    for (1 .. 100) { last if join('', map { sync_of($_, 'c') } @both) !~ /"pending":[1-9]/; sleep 0.02 }
    stop_redis();
    sleep 0.1;    # the round trip under way waits in Redis's socket
    my @answers;
    for my $h (@both) {
        push @answers, post($h, 'c', $key, "&incr=$by");
        put($h, 'c', "$key-h$h-$_", "v$_") for 1 .. 20;
    }
    sleep 0.3;
    cont_redis();
    # Each host's own value already shows its addition: wait until Redis has
    # answered both batches and a round trip more has run.
    settle();
    return @answers;
}

sub settle {
    for (1 .. 250) { last if join('', map { sync_of($_, 'c') } @both) !~ /"pending":[1-9]/; sleep 0.02 }
    sleep 0.1;
}

# --- int: never wrapped, the same value on every host and in Redis
is(put(1, 'c', 'i', '2147483640', '&type=int'), 201, 'an int near its top on host 1');
ok(defined converge('c', 'i', '2147483640', 5, \@both), 'it reaches host 2');
is(join(' ', add_on_both_while_stopped('i', 5)), '200 2147483645 200 2147483645',
   'each host adds 5 while Redis is stopped: each is in range locally');
ok(defined converge('c', 'i', '2147483645', 5, \@both),
   'both hosts converge to 2147483645: one addition applied, the other refused, nothing wrapped')
    or diag values_of('c', 'i', \@both);
is(redis_cli('hget t412:c i'), '2147483645', 'Redis holds the same value, within an int');
is(redis_cli('hget t412:c:meta i'), 'i:0', 'and still an int');
ok(defined converge('c', "i-h$_-20", 'v20', 5, \@both), "host ${_}'s other changes reach every host") for @both;

# --- long: HINCRBY's overflow refuses one key, not the batch
my $near = '9223372036854775800';
is(put(1, 'c', 'l', $near, '&type=long'), 201, 'a long near its top on host 1');
ok(defined converge('c', 'l', $near, 5, \@both), 'it reaches host 2');
is(join(' ', add_on_both_while_stopped('l', 5)), '200 9223372036854775805 200 9223372036854775805',
   'each host adds 5 while Redis is stopped');
ok(defined converge('c', 'l', '9223372036854775805', 5, \@both),
   'both hosts converge to the value Redis keeps, exactly')
    or diag values_of('c', 'l', \@both);
is(redis_cli('hget t412:c l'), '9223372036854775805', 'Redis holds it');
for my $h (@both) {
    my $missing = grep { !defined converge('c', "l-h$h-$_", "v$_", 5, \@both) } 1 .. 20;
    is($missing, 0, "the 20 other changes host $h made in the refused addition's batch reach every host");
}
for my $h (@both) {
    my $pending;
    for (1 .. 100) { $pending = sync_of($h, 'c'); last if $pending =~ /"pending":0,/; sleep 0.02 }
    like($pending, qr/"pending":0,.*"last_error":""/, "host $h has nothing pending and no error");
}
is(redis_cli('hlen t412:c'), 2 + 80, 'Redis holds every key');

# --- an addition within range on top of the refused one still counts
is(post(2, 'c', 'l', '&incr=-5'), '200 9223372036854775800', 'host 2 subtracts 5');
ok(defined converge('c', 'l', $near, 5, \@both), 'and every host follows') or diag values_of('c', 'l', \@both);

# --- an addition's result travels exactly, whatever its size (Lua writes
# a number of 15 digits or more as 1.2345678901235e+14)
for my $n ('123456789012345', '9007199254740993') {
    is(put(1, 'c', "big$n", $n, '&type=long'), 201, "a long of " . length($n) . " digits");
    ok(defined converge('c', "big$n", $n, 5, \@both), 'on both hosts');
    my $next = $n =~ s/(\d)$/$1 + 1/er;
    is(post(1, 'c', "big$n", '&incr=1'), "200 $next", 'host 1 adds 1');
    ok(defined converge('c', "big$n", $next, 5, \@both), "both hosts show $next") or diag values_of('c', "big$n", \@both);
}

# --- a host far behind large values: its read is bounded in bytes by the
# script, so no reply is larger than its map could hold, and it catches up
my %kids = map { $_ => 1 } split ' ', `ps -o pid= --ppid @{[master_pid(2)]}`;
my ($w0) = grep { $kids{$_} } `ss -Htnp dst 127.0.0.1:$rport` =~ /pid=(\d+)/g;
ok($w0, 'host 2 has one worker connected to Redis');
# A position in the stream first (a host with none loads the whole map).
is(put(1, 'big', 'v', 'first'), 201, 'a first value');
ok(defined converge('big', 'v', 'first', 5, \@both), 'on both hosts');
sleep 0.1;
kill 'STOP', $w0;
for my $i (1 .. 60) {
    put(1, 'big', 'v', chr(96 + $i % 26) x 100_000);
    sleep 0.03;    # one batch, and one stream entry, each
}
kill 'CONT', $w0;
my $last = chr(96 + 60 % 26) x 100_000;
ok(defined converge('big', 'v', $last, 10, \@both), 'a host that missed 6 MB of changes to a 1m map catches up');
unlike(error_log(2), qr/invalid reply/, 'reading no reply larger than its map could hold');

my $alerts = join '', map { grep { /\[(alert|emerg|crit)\]|exited on signal/ } split /^/m, error_log($_) } @both;
is($alerts, '', 'no alert and no crash in the error logs');

stop_host($_) for @both;
kill_redis();
done_testing();
