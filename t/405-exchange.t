# PUT ?exchange: stores the body and answers the previous value (200, its
# type and ETag), or 201 and an empty body when there was none; atomic under
# concurrent clients served by several workers.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

use_api_config(more_config => <<'_EOC_');
    location /ro/ { shared_map_api readonly; }
    location /pid/ { shared_map_api; add_header X-Pid $pid; }
_EOC_

run_tests();

__DATA__

=== TEST 1: an exchange of an absent key stores it and answers 201 with an empty body
--- request eval
["PUT /api/m?key=x&exchange\nfirst", "GET /api/m?key=x"]
--- error_code eval
[201, 200]
--- response_body eval
["", "first"]
--- response_headers eval
["X-Shared-Map-Type:\nETag:", "X-Shared-Map-Type: string"]



=== TEST 2: ... then it answers the previous value with its type and ETag, whatever the new type
--- init
use HTTP::Tiny;
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/api/m";
my $http = HTTP::Tiny->new;
my $etag = $http->get("$base?key=x")->{headers}{etag};
my $res = $http->request("PUT", "$base?key=x&exchange&type=long", { content => "42" });
Test::More::is($res->{status}, 200, "200 for the previous value");
Test::More::is($res->{content}, "first", "its bytes");
Test::More::is($res->{headers}{'x-shared-map-type'}, "string", "its type");
Test::More::is($res->{headers}{etag}, $etag, "its ETag, as a read answered it");
$res = $http->request("PUT", "$base?key=x&exchange&type=int", { content => "7" });
Test::More::is("$res->{status} $res->{content} $res->{headers}{'x-shared-map-type'}", "200 42 long",
    "a long previous value");
--- request eval
["PUT /api/m?key=x&exchange\nlast", "GET /api/m?key=x"]
--- error_code eval
[200, 200]
--- response_body eval
["7", "last"]
--- response_headers eval
["X-Shared-Map-Type: int\nETag: \"i-7\"", "X-Shared-Map-Type: string"]



=== TEST 3: ... If-Match guards an exchange: the current ETag swaps, another is 412 and changes nothing
--- init
use HTTP::Tiny;
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/api/m";
my $http = HTTP::Tiny->new;
my $etag = $http->get("$base?key=x")->{headers}{etag};
my $res = $http->request("PUT", "$base?key=x&exchange", { content => "swapped", headers => { "If-Match" => $etag } });
Test::More::is("$res->{status} $res->{content}", "200 last", "the matching ETag exchanges");
Test::More::is($res->{headers}{etag}, $etag, "and answers the previous value's ETag");
$res = $http->request("PUT", "$base?key=x&exchange", { content => "lost", headers => { "If-Match" => $etag } });
Test::More::is("$res->{status} $res->{content}", "412 precondition failed\n", "the stale ETag is refused");
$res = $http->request("PUT", "$base?key=new&exchange", { content => "v", headers => { "If-None-Match" => "*" } });
Test::More::is($res->{status}, 201, "If-None-Match: * on an absent key");
--- request eval
["GET /api/m?key=x", "PUT /api/m?key=new&exchange\nw"]
--- more_headers eval
["", "If-None-Match: *"]
--- error_code eval
[200, 412]
--- response_body eval
["swapped", "precondition failed\n"]



=== TEST 4: ... ttl= applies to the stored value; an expired previous value is none
--- request eval
["PUT /api/h?key=t&exchange&ttl=1\nshort", "GET /api/h?key=t"]
--- error_code eval
[201, 200]
--- response_body eval
["", "short"]



=== TEST 5: ... (two seconds later)
--- init
sleep 2;
--- request eval
["PUT /api/h?key=t&exchange\nnext", "PUT /api/h?key=t&exchange\nthird"]
--- error_code eval
[201, 200]
--- response_body eval
["", "next"]



=== TEST 6: ... refused like any PUT: bad arguments 400, a read-only location 405, a bad number 400
--- request eval
["PUT /api/m?key=x&exchange&nx\nv", "PUT /api/m?key=x&exchange=1\nv", "PUT /ro/m?key=x&exchange\nv",
 "PUT /api/m?key=x&exchange&type=int\nabc", "GET /api/m?key=x"]
--- error_code eval
[400, 400, 405, 400, 200]
--- response_body eval
["arguments \"nx\" and \"exchange\" exclude each other\n", "argument \"exchange\" takes no value\n",
 "shared map \"m\" is read-only here\n", "invalid int value \"abc\"\n", "swapped"]



=== TEST 7: 8 concurrent clients x 100 exchanges on two workers: each previous value answered exactly once
--- init
use HTTP::Tiny;
use POSIX ();
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/pid/h";
HTTP::Tiny->new->request("PUT", "$base?key=swap", { content => "initial" });
my @kids;
for my $c (1 .. 8) {
    pipe(my $r, my $w) or die "pipe: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $r;
        my $http = HTTP::Tiny->new(keep_alive => 0);
        for my $i (1 .. 100) {
            my $res = $http->request("PUT", "$base?key=swap&exchange", { content => "c$c-$i" });
            print {$w} ($res->{status} == 200 ? "OK $res->{headers}{'x-pid'} $res->{content}" : "ERR $res->{status}"), "\n";
        }
        close $w;
        POSIX::_exit(0);
    }
    close $w;
    push @kids, [$pid, $r];
}
my (%answered, %pids, $errors, $n);
for my $k (@kids) {
    my ($pid, $r) = @$k;
    while (my $line = <$r>) {
        chomp $line;
        $n++;
        if ($line =~ /^OK (\d+) (.*)$/) { $pids{$1}++; $answered{$2}++ } else { $errors++ }
    }
    waitpid $pid, 0;
}
my $last = HTTP::Tiny->new->get("$base?key=swap")->{content};
$answered{$last}++;
my %written = map { $_ => 1 } "initial", map { my $c = $_; map { "c$c-$_" } 1 .. 100 } 1 .. 8;
Test::More::is($n, 800, "every exchange answered");
Test::More::is($errors // 0, 0, "each with a previous value");
Test::More::is(scalar(keys %pids), 2, "both workers answered");
Test::More::is_deeply([sort keys %answered], [sort keys %written],
    "the answered values and the final one are the values written and the initial one");
Test::More::is(scalar(grep { $answered{$_} != 1 } keys %answered), 0, "each exactly once");
--- request
GET /api/h?key=swap
--- error_code: 200
