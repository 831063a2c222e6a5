# Counts stay exact when two workers serve concurrent requests.
use Test::Nginx::Socket 'no_plan';

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: 8 concurrent clients x 250 requests, served by both workers, counted exactly
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map hits tinymap?space=1m&entries=1000;
shared_map longs hashmap?space=1m&entries=1000;
--- config
location = /hit {
    shared_map_key hits total;
    add_header X-Pid $pid;
    return 200 "$shared_map_incr";
}
location = /count {
    shared_map_count longs "by-uri:/count";
    shared_map_count longs "second-key";
    add_header X-Pid $pid;
    return 204;
}
location = /total { shared_map_key hits total; return 200 "$shared_map_value"; }
location = /longs { shared_map_key longs $arg_k; return 200 "$shared_map_value"; }
--- init
use HTTP::Tiny;
use POSIX ();
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my @kids;
for my $c (1 .. 8) {
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $r;
        my $http = HTTP::Tiny->new(keep_alive => 0);
        for my $i (1 .. 250) {
            my $path = $i % 2 ? "/hit" : "/count";
            my $res = $http->get("$base$path");
            print {$w} (($res->{status} == 200 || $res->{status} == 204)
                        ? "$path $res->{headers}{'x-pid'} " . ($res->{content} // '') : "ERR $res->{status}"), "\n";
        }
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    push @kids, [$pid, $r];
}
my (%pids, %seen, $n, $errors);
for my $k (@kids) {
    my ($pid, $r) = @$k;
    while (my $line = <$r>) {
        chomp $line;
        $n++;
        if ($line =~ /^ERR/) { $errors++; next }
        my ($path, $wpid, $value) = split / /, $line;
        $pids{$wpid}++;
        $seen{$value}++ if $path eq "/hit";
    }
    waitpid $pid, 0;
}
Test::More::is($n, 2000, "all 2000 concurrent requests answered");
Test::More::is($errors // 0, 0, "no request failed");
Test::More::cmp_ok(scalar(keys %pids), '==', 2, "both workers answered")
    or Test::More::diag(join ", ", map { "$_=$pids{$_}" } keys %pids);
# Every value 1..1000 was handed out exactly once: no lost or doubled increment.
Test::More::is(scalar(grep { $seen{$_} == 1 } 1 .. 1000), 1000, "each count returned exactly once");
--- request eval
["GET /total", "GET /longs?k=by-uri:/count", "GET /longs?k=second-key"]
--- response_body eval
["1000", "1000", "1000"]
