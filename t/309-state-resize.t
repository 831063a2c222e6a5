# A reload that changes a state= map's space gives it a new zone (issue 11,
# finding 8). The new map is filled from the old zone, still mapped in the
# master, not from the state file (up to a second old). Clients count through
# 6 reloads that alternate the space between 64k and 128k; what
# an old worker writes after the copy is lost: nginx lets old workers run about
# 100 ms after it starts the new ones. The test allows 0.15 s of writes per
# reload (a map loaded from the file loses up to a second) and reports the
# count. About 10 seconds.

use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

$ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);
our $Reloads = 6;

sub count_through_reloads {
    require HTTP::Tiny;
    require Time::HiRes;
    require POSIX;
    my $root = server_root();
    my $conf = "$root/conf/nginx.conf";
    my $master = master_pid("$root/logs/nginx.pid");
    my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
    my $stop = "$root/html/stop";
    my @kids;
    for my $c (1 .. 3) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
            my ($sent, $acked) = (0, 0);
            while (!-e $stop) {
                $sent++;
                $acked++ if $http->get("$base/incr?k=c$c")->{status} == 200;
            }
            print {$w} "$sent $acked\n";
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my $started = Time::HiRes::time();
    my $space = '64k';
    for my $i (1 .. $Reloads) {
        select undef, undef, undef, 1.2;
        my $next = $space eq '64k' ? '128k' : '64k';
        my $text = do { local (@ARGV, $/) = ($conf); <> };
        $text =~ s/space=$space/space=$next/ or die "no space=$space in $conf";
        open my $out, '>', $conf or die "$conf: $!";
        print $out $text;
        close $out;
        kill 'HUP', $master or die "HUP: $!";
        $space = $next;
    }
    select undef, undef, undef, 1.2;
    open my $t, '>', $stop;
    close $t;
    my $elapsed = Time::HiRes::time() - $started;
    my ($lost, $sent_all, $acked_all, @over) = (0, 0, 0);
    my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
    for my $c (1 .. 3) {
        my ($pid, $r) = @{ $kids[$c - 1] };
        my $line = readline($r) // '0 0';
        my ($sent, $acked) = split ' ', $line;
        waitpid $pid, 0;
        my $value = $http->get("$base/value?k=c$c")->{content};
        $main::Final{"c$c"} = $value;
        $lost += $acked - $value if $value < $acked;
        push @over, "c$c: $value > $sent" if $value > $sent;
        ($sent_all, $acked_all) = ($sent_all + $sent, $acked_all + $acked);
    }
    # What was lost, in seconds of writes per reload.
    my $window = $acked_all ? $lost / $Reloads / ($acked_all / $elapsed) : 1;
    Test::More::diag(sprintf "%d reloads changing the space: %d increments answered, %d lost, %.3f s of writes per reload",
                     $Reloads, $acked_all, $lost, $window) if $ENV{TEST_VERBOSE};
    Test::More::cmp_ok($acked_all, '>', 300, 'the clients counted through the reloads');
    Test::More::is("@over", '', 'no counter exceeds the increments sent');
    Test::More::cmp_ok($window, '<=', 0.15, 'at most what old workers write while nginx starts new ones is lost');
    if ($ENV{TEST_RESIZE_REPORT}) {
        open my $f, '>', $ENV{TEST_RESIZE_REPORT} or die "$!";
        print $f "reloads=$Reloads acked=$acked_all lost=$lost\n";
    }
}

our %Final;

# After a stop and a start, the map loaded from the file holds what it held:
# no retired worker replaced the file with an older snapshot.
sub check_after_restart {
    require HTTP::Tiny;
    my $http = HTTP::Tiny->new(keep_alive => 0, timeout => 5);
    for my $k (sort keys %Final) {
        my $got = $http->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/value?k=$k")->{content};
        Test::More::is($got, $Final{$k}, "$k survives the restart whole");
    }
}

{
    no strict 'refs';
    # `--- init` runs in Test::Nginx::Util
    for my $pkg (qw(Test::Nginx::Util Test::Nginx::Socket)) {
        *{"${pkg}::$_"} = \&{"main::$_"} for qw(count_through_reloads check_after_restart);
    }
}

master_on();
workers(2);
no_shuffle();
timeout(20);
run_tests();

__DATA__

=== TEST 1: counts survive reloads that change the map's space, filled from the old zone
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map r tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/r.state;
--- config
location /incr { shared_map_key r $arg_k; return 200 "$shared_map_incr"; }
location /value { shared_map_key r $arg_k; return 200 "$shared_map_value"; }
--- init
count_through_reloads();
--- request
GET /value?k=c1
--- response_body_like: ^\d+$
--- error_log
shared map "r": loaded 3 entries from the zone it had before the reload
--- no_error_log
[crit]
[alert]



=== TEST 2: after a stop and a start, the file holds the last counts, not an old zone's
(Test::Nginx's HUP mode reloads instead of starting nginx: not this block's case.)
--- skip_eval
3: $ENV{TEST_NGINX_USE_HUP}
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map r tinymap?space=64k&state=$TEST_NGINX_STATE_DIR/r.state;
--- config
# started again
location /value { shared_map_key r $arg_k; return 200 "$shared_map_value"; }
--- init
check_after_restart();
--- request
GET /value?k=c2
--- response_body_like: ^\d+$
--- error_log
shared map "r": loaded 3 entries from "
