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
use POSIX ();
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $pidfile = Test::Nginx::Socket::server_root() . "/logs/nginx.pid";
open my $fh, '<', $pidfile or die "no pid file: $!";
chomp(my $master = <$fh>);
my @kids;
for my $c (1 .. 4) {
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $r;
        my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
        my $ok = 0;
        for (1 .. 300) { $ok++ if $http->get("$base/hit")->{status} == 200 }
        print {$w} "$ok\n";
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
my $ok = 0;
for my $k (@kids) {
    my ($pid, $r) = @$k;
    my $line = <$r>;
    $ok += $line if defined $line;
    waitpid $pid, 0;
}
Test::More::cmp_ok($killed, '>=', 5, "workers were killed");
my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
my $total = $http->get("$base/total")->{content};
Test::More::cmp_ok($total, '>=', $ok, "every answered increment was counted ($ok answered)");
Test::More::cmp_ok($total, '<=', 1200, "nothing counted twice");
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
