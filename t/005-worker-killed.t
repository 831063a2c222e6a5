# A worker killed at any instant leaves no deadlock and no torn entry.
use Test::Nginx::Socket 'no_plan';

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: workers killed with SIGKILL under load; the map keeps working and counting
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map hits tinymap?space=1m&entries=1000;
shared_map strings hashmap?space=1m&entries=1000;
--- config
location = /hit {
    shared_map_key hits total;
    shared_map_count strings "k$msec";
    add_header X-Pid $pid;
    return 200 "$shared_map_incr";
}
location = /total { shared_map_key hits total; return 200 "$shared_map_value"; }
--- init
use HTTP::Tiny;
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $pidfile = Test::Nginx::Socket::server_root() . "/logs/nginx.pid";
open my $fh, '<', $pidfile or die "no pid file: $!";
chomp(my $master = <$fh>);
# One GET /hit on a connection of its own, never resent (HTTP::Tiny resends an
# idempotent GET whose connection drops, and a worker killed after counting but
# before answering is then rightly counted again): returns whether it was sent,
# and whether it was answered 200.
sub hit_once {
    my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}", Timeout => 5)
        or return (0, 0);
    syswrite($s, "GET /hit HTTP/1.0\r\nHost: localhost\r\n\r\n") or return (0, 0);
    my ($resp, $sel) = ('', IO::Select->new($s));
    while ($sel->can_read(5)) {
        my $n = sysread($s, $resp, 4096, length $resp);
        last if !$n;
    }
    return (1, $resp =~ m{^HTTP/1\.1 200 } ? 1 : 0);
}
my @kids;
for my $c (1 .. 4) {
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $r;
        $SIG{PIPE} = 'IGNORE';    # a killed worker's connection must not kill the client
        my ($sent, $ok) = (0, 0);
        for (1 .. 300) {
            my ($s, $o) = hit_once();
            $sent += $s;
            $ok += $o;
        }
        print {$w} "$sent $ok\n";
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    push @kids, [$pid, $r];
}
# Kill a worker every 50 ms while the clients run.
my $killed = 0;
for (1 .. 10) {
    select undef, undef, undef, 0.05;
    my @workers = grep { $_ } split /\s+/, `pgrep -P $master`;
    if (@workers) { kill 'KILL', $workers[rand @workers]; $killed++ }
}
my ($sent, $ok) = (0, 0);
for my $k (@kids) {
    my ($pid, $r) = @$k;
    my ($s, $o) = split ' ', (<$r> // '0 0');
    $sent += $s;
    $ok += $o;
    waitpid $pid, 0;
}
Test::More::cmp_ok($killed, '>=', 5, "workers were killed");
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
my $total = $http->get("$base/total")->{content};
Test::More::cmp_ok($total, '>=', $ok, "every answered increment was counted ($ok answered)");
# A request whose worker was killed may or may not have counted; none counts twice.
Test::More::cmp_ok($total, '<=', $sent, "nothing counted twice ($sent requests sent)");
# No deadlock: new workers take the lock and count on.
my $after = $http->get("$base/hit");
Test::More::is($after->{status}, 200, "a new worker serves after the kills");
Test::More::is($after->{content}, $total + 1, "and counts from where the map was");
--- request
GET /total
--- response_body_like: ^\d+$
--- no_error_log
[alert] could not
[crit]
