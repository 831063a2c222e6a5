# A hostile Redis: a fake server that answers the handshake as Redis does,
# then answers every round trip with a reply no Redis sends: nested 50,000
# levels deep, a bulk string announcing 9 GB, an array of 5,000,000 integers,
# garbage, a bulk string cut off, an array a large map could hold sent in
# small pieces. The replicating worker never crashes nor grows, nor reads a
# reply again from its start, requests keep their usual latency, each
# failure is logged once, and the worker connects again with growing pauses.
use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(time sleep);
use HTTP::Tiny;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapHosts;

my $root = setup('redis-hostile');
my $fport = 16384 + ($ENV{TEST_NGINX_SERVER_PORT} || 1984) % 1000 + 16;

# The fake server: one connection at a time; each accepted connection is
# counted in $root/accepts, with the time and the pid of the process that
# made it (asked while the connection is surely open: the server has not
# answered yet).
sub fake_redis {
    my ($mode) = @_;
    my $pid = fork() // die "fork: $!";
    return $pid if $pid;
    $SIG{PIPE} = 'IGNORE';
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $fport, Listen => 8, ReuseAddr => 1)
        or die "listen $fport: $!";
    while (my $c = $l->accept) {
        my $t = time;
        my $port = $c->peerport;
        my ($pid) = `ss -Htnp state established src 127.0.0.1:$port dst 127.0.0.1:$fport 2>/dev/null` =~ /pid=(\d+)/;
        open my $log, '>>', "$root/accepts"; printf $log "%.3f %s\n", $t, $pid // ''; close $log;
        serve($c, $mode);
        close $c;
    }
    POSIX::_exit(0);
}

# Reads commands (arrays of bulk strings) and answers them.
sub serve {
    my ($c, $mode) = @_;
    my $buf = '';
    while (1) {
        my $n = sysread($c, $buf, 65536, length $buf);
        return unless $n;
        while ($buf =~ /^\*(\d+)\r\n/) {
            my ($count, $pos, @words) = ($1, length($&));
            for (1 .. $count) {
                last unless substr($buf, $pos) =~ /^\$(\d+)\r\n/;
                my $len = $1;
                $pos += length($&);
                last if length($buf) < $pos + $len + 2;
                push @words, substr($buf, $pos, $len);
                $pos += $len + 2;
            }
            last if @words < $count;
            substr($buf, 0, $pos) = '';
            my $cmd = uc $words[0];
            if ($cmd eq 'SCRIPT') {
                syswrite $c, "\$40\r\n" . ('0' x 40) . "\r\n";
            } elsif ($cmd eq 'EVALSHA' || $cmd eq 'EVAL') {
                hostile($c, $mode) or return;
            } else {
                syswrite $c, "+OK\r\n";
            }
        }
    }
}

sub write_all {
    my ($c, $data) = @_;
    while (length $data) {
        my $n = syswrite($c, $data) or return 0;
        substr($data, 0, $n) = '';
    }
    1;
}

# Answers a round trip; false when the client went away.
sub hostile {
    my ($c, $mode) = @_;
    if ($mode eq 'deep') {
        return write_all($c, "*1\r\n" x 50_000);
    } elsif ($mode eq 'bulk') {
        # 9 GB announced; up to 512 MB sent, while the client reads.
        write_all($c, "\$9000000000\r\n") or return 0;
        my $chunk = 'x' x (1 << 20);
        for (1 .. 512) { write_all($c, $chunk) or return 0 }
        return 1;
    } elsif ($mode eq 'partial') {
        write_all($c, "\$100000000\r\n") or return 0;
        my $chunk = 'x' x (1 << 20);
        for (1 .. 90) { write_all($c, $chunk) or return 0 }
        sleep 0.5;
        return 0;
    } elsif ($mode eq 'trickle') {
        # 1,000,000 integers (4 MB) in pieces of 16 KB over about a second.
        write_all($c, "*1000000\r\n") or return 0;
        my $chunk = ":1\r\n" x 4096;
        for (1 .. 1_000_000 / 4096) { write_all($c, $chunk) or return 0; sleep 0.004 }
        return write_all($c, ":1\r\n" x (1_000_000 % 4096));
    } elsif ($mode eq 'array') {
        write_all($c, "*5000000\r\n") or return 0;
        my $chunk = ":1\r\n" x 65536;
        for (1 .. int(5_000_000 / 65536) + 1) { write_all($c, $chunk) or return 0 }
        return 1;
    } else {
        return write_all($c, "\x00\x01garbage\r\n");
    }
}

# The times of the connections accepted, and the pid that made each.
sub accepts { open my $fh, '<', "$root/accepts" or return (); map { (split ' ')[0] } <$fh> }
sub accept_pids { open my $fh, '<', "$root/accepts" or return (); grep { defined } map { (split ' ')[1] } <$fh> }

# The replicating worker: the one that connected to the fake server.
sub replicating_worker {
    for (1 .. 200) {
        my ($pid) = accept_pids();
        return $pid if $pid;
        sleep 0.05;
    }
    return;
}

# CPU seconds a process has used.
sub cpu { my $s = do { local (@ARGV, $/) = ("/proc/$_[0]/stat"); <> } // ''; my @f = split ' ', ($s =~ /\)\s+(.*)/)[0] // ''; (($f[11] // 0) + ($f[12] // 0)) / 100 }

sub status_kb { my ($pid, $field) = @_; my $s = do { local (@ARGV, $/) = ("/proc/$pid/status"); <> } // ''; $s =~ /^$field:\s+(\d+)/m ? $1 : 0 }

# The slowest of 200 requests after the first few, and their 99th percentile.
sub latency {
    my ($h) = @_;
    my $c = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
    my @t;
    for (1 .. 200) {
        my $t0 = time;
        return (99, 99) unless $c->get(url($h, '/hit'))->{status} == 200;
        push @t, time - $t0;
        sleep 0.01;
    }
    @t = sort { $a <=> $b } @t;
    return ($t[197] * 1000, $t[-1] * 1000);
}

# Each mode: the map (its space bounds a reply), what the log says, and
# whether the connection is closed (else the reply is refused as a map's).
my @modes = (
    [deep    => 'space=1m&entries=1000', qr/invalid reply: nested deeper than 4 levels/, 1],
    [bulk    => 'space=1m&entries=1000', qr/invalid reply: larger than \d+ bytes/, 1],
    [array   => 'space=1m&entries=1000', qr/invalid reply: larger than \d+ bytes/, 1],
    [garbage => 'space=1m&entries=1000', qr/invalid reply: unknown type/, 1],
    # An array a 64m map could hold, in pieces: each byte is scanned once,
    # the whole decoded once, then refused as not the script's.
    [trickle => 'space=64m', qr/shared map "c": bad reply/, 0],
    # A bulk string the map could hold, cut off: the 90 MB it took are
    # returned when the connection closes.
    [partial => 'space=64m', qr/Redis closed the connection/, 1],
);
my $h = 0;
for (@modes) {
    my ($mode, $space, $said, $closes) = @$_;
    $h++;
    unlink "$root/accepts";
    my $server = fake_redis($mode);
    sleep 0.2;
    start_host($h, <<"_EOC_", '        location = /hit { shared_map_key c x; return 200 "$shared_map_incr"; }');
    shared_map_redis 127.0.0.1:$fport;
    shared_map c tinymap?$space&sync;
_EOC_
    my $worker = replicating_worker();
    ok($worker, "$mode: worker 0 connects to the fake server");
    my $t0 = time;
    my ($rss0, $cpu0) = (status_kb($worker, 'VmRSS'), cpu($worker));
    my ($p99, $max) = latency($h);    # about 3 s of requests while it connects again and again
    ok($p99 < 100, sprintf("$mode: requests keep their usual latency (p99 %.1f ms, slowest %.1f ms)", $p99, $max));
    sleep 6 - (time - $t0) if time - $t0 < 6;
    my @accepts = accepts();
    my $cpu = cpu($worker) - $cpu0;
    # The server goes away, maybe in the middle of a reply.
    kill 'KILL', $server;
    waitpid $server, 0;
    sleep 0.5;
    my ($hwm, $rss) = map { status_kb($worker, $_) } qw(VmHWM VmRSS);
    ok($cpu < 2, sprintf("$mode: the replicating worker used %.2f s of CPU in 6 s", $cpu));
    my $log = error_log($h);
    my $crashes = () = $log =~ /exited on signal/g;
    is($crashes, 0, "$mode: no worker crashed");
    ok(kill(0, $worker), "$mode: the replicating worker is the same process");
    ok($hwm - $rss0 < 256 * 1024, sprintf("$mode: the worker grew by %d MB at most", ($hwm - $rss0) / 1024));
    ok($rss - $rss0 < 32 * 1024, sprintf("$mode: and holds %d MB more after the connection closed", ($rss - $rss0) / 1024));
    # The server's going away is a line of its own.
    my @lines = grep { /shared map: Redis:/ && !/Redis closed the connection|connect\(\) failed/ || $mode eq 'partial' && /closed/ } split /\n/, $log;
    is(scalar @lines, 1, "$mode: one log line") or diag join "\n", @lines;
    like($lines[0] // '', qr/\[error\] .*shared map: Redis: $said/, "$mode: it says what was wrong");
    # Pauses of 0.5, 1, 2 and 4 s: 4 or 5 connections in 6 s, not 12.
    my $n = @accepts;
    if ($closes) {
        ok($n >= 3 && $n <= 6, "$mode: $n connections in 6 s: it connects again with growing pauses")
            or diag join ' ', map { sprintf '%.2f', $_ - $accepts[0] } @accepts;
    } else {
        is($n, 1, "$mode: the connection is kept");
    }
    like(sync_of($h, 'c'), qr/"connected":(true|false),.*"last_error":"[^"]+"/, "$mode: the statistics say why");
    stop_host($h) unless $mode eq 'partial';
}

# A real Redis on the fake server's address: the host still connected to it
# replicates once its pause ends.
{
    no warnings 'once';
    $SharedMapHosts::rport = $fport;
}
start_redis();
my $t0 = time;
my $sync = '';
# Connected comes first, then the batch in flight is acknowledged: wait for both.
while (time - $t0 < 12) { $sync = sync_of($h, 'c'); last if $sync =~ /"connected":true,"pending":0/; sleep 0.1 }
like($sync, qr/"connected":true,"pending":0/, sprintf('a real Redis: connected after %.1f s, nothing pending', time - $t0));
like(error_log($h), qr/\[notice\] .*shared map: Redis: replicating again/, 'and the log says so');
is(redis_cli('hget shared_map:c x'), '200', 'the counts made meanwhile reached it');
stop_host($h);
kill_redis();
done_testing();
