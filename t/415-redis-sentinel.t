# Replication through a Redis master found by Redis Sentinel: a master, a
# replica and three redis-sentinel processes; two hosts asking the sentinels
# for the master, the master SIGKILLed under load, the hosts following the
# failover (+switch-master), and every counter exact afterwards: nothing the
# hosts counted lost, nothing applied twice. A replica's -READONLY reply is
# a disconnect.
use strict;
use warnings;
use Test::More;
use Time::HiRes qw(time sleep);
use File::Path qw(make_path);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapHosts;

my $sentinel_bin = `command -v redis-sentinel 2>/dev/null`;
chomp $sentinel_bin;
if (!redis_bin() || !$sentinel_bin) {
    plan skip_all => 'redis-server and redis-sentinel are not installed (apt-get install redis-server redis-sentinel)'
        unless $ENV{CI};
    fail('redis-server and redis-sentinel are installed');
    done_testing();
    exit;
}

my $root = setup('redis-sentinel');
my $mport = redis_port();
# Beside the fakes' port (Redis port + 16): the replica and the sentinels.
my $rport = $mport + 17;
my @sports = map { $mport + 17 + $_ } 1 .. 3;
my $password = 'Sent1nel-pw-415';

sub cli { my ($p, @a) = @_; my $out = `redis-cli -p $p @a 2>&1`; chomp $out; $out }

sub spawn {
    my (@cmd) = @_;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) { exec @cmd; exit 1 }
    return $pid;
}

# The replica's first copy starts at once, not after diskless sync's delay.
start_redis(args => ['--repl-diskless-sync-delay', 0]);
make_path("$root/replica");
my $replica = spawn(redis_bin(), '--port', $rport, '--bind', '127.0.0.1', '--dir', "$root/replica",
    '--save', '', '--appendonly', 'no', '--logfile', "$root/replica/redis.log",
    '--replicaof', '127.0.0.1', $mport);
my @sentinels;
for my $i (0 .. 2) {
    my $dir = "$root/sentinel$i";
    make_path($dir);
    open my $fh, '>', "$dir/sentinel.conf" or die $!;
    print $fh <<"_EOC_";
port $sports[$i]
bind 127.0.0.1
dir $dir
logfile $dir/sentinel.log
requirepass $password
sentinel monitor mym 127.0.0.1 $mport 2
sentinel down-after-milliseconds mym 1000
sentinel failover-timeout mym 10000
sentinel parallel-syncs mym 1
_EOC_
    close $fh;
    push @sentinels, spawn($sentinel_bin, "$dir/sentinel.conf");
}
# Whatever ends the test, no Redis process outlives it (nor holds prove's pipe).
END {
    kill 'KILL', grep { defined } @sentinels, $replica, $SharedMapHosts::redis_pid if @sentinels;
    stop_host($_) for 1 .. 3;
}

# Three sentinels that know each other and the replica: a failover can be voted.
my $t0 = time;
my $ready = 0;
while (time - $t0 < 30) {
    my $all = 1;
    for my $p (@sports) {
        my $m = cli($p, '-a', $password, '--no-auth-warning', 'SENTINEL', 'master', 'mym');
        $all = 0 unless $m =~ /num-slaves\n1\n/ && $m =~ /num-other-sentinels\n2\n/;
    }
    # The replica holds the master's data: a failover promotes a copy.
    $all = 0 unless cli($rport, 'INFO', 'replication') =~ /master_link_status:up/;
    $ready = 1, last if $all;
    sleep 0.2;
}
ok($ready, 'three sentinels watch the master and its replica, in sync') or BAIL_OUT('sentinels not ready');

my $sentinel_list = join ',', map { "127.0.0.1:$_" } @sports;
my $conf = <<"_EOC_";
    shared_map_redis mym sentinel=$sentinel_list sentinel_password=$password prefix=t415;
    shared_map c tinymap?space=1m&entries=1000&sync;
_EOC_
my $hit = '        location = /hit { shared_map_key c $arg_k; return 200 "$shared_map_incr"; }';
like(nginx_t("shared_map_redis mym sentinel=$sentinel_list sentinel_password=$password;"),
    qr/test is successful/, 'a master name and its sentinels pass nginx -t');
like(nginx_t("shared_map_redis mym sentinel_password=$password;"),
    qr/\[emerg\] "sentinel_password=" requires "sentinel="/, 'sentinel_password= needs sentinel=');
start_host($_, $conf, $hit) for 1, 2;

http_get(1, '/hit?k=n');
ok(defined converge('c', 'n', '1', 10, [1, 2]), 'the hosts replicate through the master the sentinels name');
like(error_log(1), qr/\[notice\] .*shared map: Redis: master "mym" is at 127\.0\.0\.1:$mport/,
    'the master\'s address, as the sentinels gave it, is logged');

# Load on both hosts; the master is killed after a second; the load goes on
# until both hosts have followed the failover, and a second more.
my ($sent, $killed, $followed, $t_kill, $t_end) = (1, 0, 0, 0, 0);
my $start = time;
while (time - $start < 40) {
    for my $h (1, 2) {
        my $r = http_get($h, '/hit?k=n');
        $sent++ if $r =~ /^200 /;
    }
    if (!$killed && time - $start > 1) {
        kill_redis();
        ($killed, $t_kill) = (1, time);
    }
    if ($killed && !$followed && error_log(1) =~ /failed over to/ && error_log(2) =~ /failed over to/) {
        $followed = time;
    }
    last if $followed && time - $followed > 1;
}
ok($followed, 'both hosts follow the failover') or diag error_log(1);
diag sprintf 'failover followed %.1f s after the kill; %d increments sent', $followed - $t_kill, $sent if $followed;
like(error_log(1), qr/\[notice\] .*master "mym" failed over to 127\.0\.0\.1:$rport/, 'to the promoted replica');
my $took = converge('c', 'n', "$sent", 20, [1, 2]);
ok(defined $took, "the counters are exact after the failover: $sent on both hosts")
    or diag values_of('c', 'n', [1, 2]), ' ', sync_of(1, 'c'), ' ', sync_of(2, 'c'), ' ',
    cli($rport, 'HGETALL', 't415:c:seq');
is(cli($rport, 'HGET', 't415:c', 'n'), "$sent", 'and in the new master');
like(cli($rport, 'HLEN', 't415:c:seq'), qr/^2$/, 'which holds both hosts\' batch numbers, copied from the old master');

# A replica refuses writes: -READONLY is a disconnect, not an answer.
start_host(3, <<"_EOC_", $hit);
    shared_map_redis 127.0.0.1:$mport prefix=t415;
    shared_map c tinymap?space=1m&entries=1000&sync;
_EOC_
my $old = spawn(redis_bin(), '--port', $mport, '--bind', '127.0.0.1', '--dir', "$root/redis",
    '--save', '', '--appendonly', 'no', '--logfile', "$root/redis/redis2.log", '--replicaof', '127.0.0.1', $rport);
push @sentinels, $old;
$t0 = time;
sleep 0.1 until cli($mport, 'ROLE') =~ /slave/ && cli($mport, 'HGET', 't415:c', 'n') eq "$sent" || time - $t0 > 10;
http_get(3, '/hit?k=n') for 1 .. 3;
$t0 = time;
sleep 0.1 until error_log(3) =~ /READONLY/ || time - $t0 > 10;
like(error_log(3), qr/\[error\] .*shared map: Redis: READONLY .*\(a demoted master\)/,
    'a write refused by a replica closes the connection');
like(sync_of(3, 'c'), qr/"connected":false/, 'and the statistics say disconnected');

my $output = join '', map { error_log($_) . http_get($_, '/maps/') . http_get($_, '/maps/c?format=prometheus') } 1 .. 3;
unlike($output, qr/\Q$password\E/, 'the sentinels\' password appears in no output');
my $alerts = `grep -h -E '\\[(alert|emerg|crit)\\]' $root/h*/logs/error.log`;
is($alerts, '', 'no alert in the error logs');

stop_host($_) for 1 .. 3;
kill 'TERM', @sentinels, $replica;
waitpid $_, 0 for @sentinels, $replica;
@sentinels = ();
done_testing();
