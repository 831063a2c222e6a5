# Conditional API requests: ETags on reads, If-Match and If-None-Match on
# writes of a key (compare-and-set), 412 with nothing changed otherwise.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use HTTP::Tiny;

# Two workers under a master: an ETag is the same whichever answers, and a
# reload keeps it.
master_on();
workers(2);
no_shuffle();
no_long_string();

our $HttpConfig = <<'_EOC_';
    shared_map m hashmap?space=1m;
    shared_map nets hashmap?space=1m&match=ip;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);
share_with_init(qw(call put_if_match is isnt like is_deeply));

# A PUT with If-Match, on a fresh connection.
sub put_if_match {
    my ($path, $etag, $body) = @_;
    return HTTP::Tiny->new(keep_alive => 0)->request(PUT => "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}$path",
        { headers => { 'If-Match' => $etag }, content => $body });
}

run_tests();

__DATA__

=== TEST 1: a read answers a strong ETag of the type and the value
--- request eval
["PUT /api/m?key=s\nhello", "GET /api/m?key=s", "PUT /api/m?key=n&type=long\n42", "GET /api/m?key=n",
 "PUT /api/m?key=i&type=int\n42", "GET /api/m?key=i", "HEAD /api/m?key=n"]
--- error_code eval
[201, 200, 201, 200, 201, 200, 200]
--- response_headers_like eval
["", "ETag: \"s-5-[0-9a-f]{32}\"", "", "ETag: \"l-42\"", "", "ETag: \"i-42\"", "ETag: \"l-42\""]



=== TEST 2: ... If-Match with the current ETag writes; with another, 412 and nothing changes
--- init
my $get = call(GET => '/api/m?key=s');
my $etag = $get->{headers}{etag} or die 'no ETag';
isnt $etag, '"s-5-cbd8a7b341bd9b025b1e906a48ae1d19"', 'not the unkeyed MurmurHash3 ETag of "hello"';
my $put = put_if_match('/api/m?key=s', $etag, 'v2');
is $put->{status}, 204, 'If-Match with the current ETag: written';
$put = put_if_match('/api/m?key=s', $etag, 'v3');
is $put->{status}, 412, 'the same ETag again: 412';
is $put->{content}, "precondition failed\n", 'with its reason';
is call(GET => '/api/m?key=s')->{content}, 'v2', 'nothing changed';
--- request
GET /api/m?key=s
--- response_body: v2



=== TEST 3: ... compare-and-set on a counter: POST with If-Match
--- request eval
["POST /api/m?key=n&incr=1", "POST /api/m?key=n&incr=1", "GET /api/m?key=n"]
--- more_headers eval
["If-Match: \"l-42\"", "If-Match: \"l-42\"", ""]
--- error_code eval
[200, 412, 200]
--- response_body eval
["43", "precondition failed\n", "43"]



=== TEST 4: ... If-Match: * only when present; weak tags never match
--- request eval
["PUT /api/m?key=absent\nx", "PUT /api/m?key=n&type=long\n7", "PUT /api/m?key=n&type=long\n8", "GET /api/m?key=absent"]
--- more_headers eval
["If-Match: *", "If-Match: *", "If-Match: W/\"l-7\"", ""]
--- error_code eval
[412, 204, 412, 404]



=== TEST 5: ... If-None-Match: * creates only when absent
--- request eval
["PUT /api/m?key=lock\nme", "PUT /api/m?key=lock\nyou", "GET /api/m?key=lock", "POST /api/m?key=lock2&incr=5"]
--- more_headers eval
["If-None-Match: *", "If-None-Match: *", "", "If-None-Match: *"]
--- error_code eval
[201, 412, 200, 200]
--- response_body eval
["", "precondition failed\n", "me", "5"]



=== TEST 6: ... DELETE with If-Match: the current ETag deletes; a stale one does not
--- request eval
["DELETE /api/m?key=n", "DELETE /api/m?key=n", "GET /api/m?key=n", "DELETE /api/m?key=n"]
--- more_headers eval
["If-Match: \"l-1\"", "If-Match: \"l-1\", \"l-7\"", "", "If-Match: *"]
--- error_code eval
[412, 204, 404, 412]



=== TEST 7: ... a list in If-None-Match: the write proceeds when none matches
--- request eval
["PUT /api/m?key=lock\nthem", "PUT /api/m?key=lock\nagain", "GET /api/m?key=lock"]
--- more_headers eval
["If-None-Match: \"l-1\", \"s-2-0\"", "If-None-Match: \"s-4-0\", W/\"s-4-9a4d3c8c1a0e2c6c8ad6c4c74a5c4b3f\"", ""]
--- error_code eval
[204, 204, 200]
--- response_body eval
["", "", "again"]



=== TEST 8: ip maps: the ETag of the range found; writes name the range
--- request eval
["PUT /api/nets?key=10.0.0.0/8&type=int\n1", "GET /api/nets?key=10.2.3.4", "PUT /api/nets?key=10.0.0.0/8&type=int\n2",
 "PUT /api/nets?key=10.9.9.9/8&type=int\n3"]
--- more_headers eval
["", "", "If-Match: \"i-1\"", "If-Match: \"i-1\""]
--- error_code eval
[201, 200, 204, 412]
--- response_headers eval
["", "ETag: \"i-1\"\nX-Shared-Map-Key: 10.0.0.0/8", "", ""]



=== TEST 9: ... a read with If-None-Match of the current ETag is 304; If-Match of another, 412
--- request eval
["GET /api/nets?key=10.2.3.4", "GET /api/nets?key=10.2.3.4", "GET /api/nets?key=10.2.3.4"]
--- more_headers eval
["If-None-Match: \"i-2\"", "If-Match: \"i-1\"", "If-None-Match: \"i-1\""]
--- error_code eval
[304, 412, 200]



=== TEST 10: finding 8: two values that share an unkeyed MurmurHash3 ETag get different ETags
--- init
# The second value's first block is chosen and its second solved so that
# MurmurHash3 x64_128 (seed 0, the old ETag) of both is 585490f65e3eabac13391f365c2caebc
# (http-parse/src/conditional.rs builds it).
my $value = 'balance=100;owner=alice;ok=true!';
my $forged = pack 'H*', '62616c616e63653d3939393939393b78435e1574dd102481423e370eafc00760';
my $old = '"s-20-585490f65e3eabac13391f365c2caebc"';
is call(PUT => '/api/m?key=acct', undef, $value)->{status}, 201, 'the value';
is call(PUT => '/api/m?key=forged', undef, $forged)->{status}, 201, 'the forged value';
my $a = call(GET => '/api/m?key=acct');
my $b = call(GET => '/api/m?key=forged');
is $b->{content}, $forged, 'stored as sent';
like $a->{headers}{etag}, qr/^"s-20-[0-9a-f]{32}"$/, 'a string ETag';
isnt $a->{headers}{etag}, $b->{headers}{etag}, 'different ETags';
isnt $a->{headers}{etag}, $old, 'not the unkeyed one';
my $again = HTTP::Tiny->new(keep_alive => 0)->get("http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/api/m?key=acct",
    { headers => { 'If-None-Match' => $b->{headers}{etag} } });
is $again->{status}, 200, "If-None-Match with the forged value's ETag: the value, not 304";
is put_if_match('/api/m?key=acct', $old, 'balance=0')->{status}, 412, 'If-Match with the old forged ETag: 412';
is put_if_match('/api/m?key=acct', $b->{headers}{etag}, 'balance=0')->{status}, 412,
    "If-Match with the forged value's ETag: 412";
is call(GET => '/api/m?key=acct')->{content}, $value, 'nothing changed';
is call(GET => '/api/m?key=acct')->{headers}{etag}, $a->{headers}{etag}, 'the ETag is stable';
--- request
GET /api/m?key=acct
--- response_body: balance=100;owner=alice;ok=true!



=== TEST 11: ... the ETag stays the same across a reload (the map's secret is kept with its zone)
--- init
my $before = call(GET => '/api/m?key=acct')->{headers}{etag} or die 'no ETag';
open my $fh, '<', server_root() . "/logs/nginx.pid" or die "pid: $!";
my $pid = <$fh>;
chomp $pid;
kill 'HUP', $pid or die "HUP: $!";
sleep 1;
is call(GET => '/api/m?key=acct')->{headers}{etag}, $before, 'the same ETag after a reload';
--- request
GET /api/m?key=acct
--- response_body: balance=100;owner=alice;ok=true!



=== TEST 12: held up (issue 20): compare-and-set under concurrency, one winner per round
--- init
require POSIX;
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
is call(PUT => '/api/m?key=cas', undef, 'round 0')->{status}, 201, 'the start';
my ($clients, $rounds, @winners) = (10, 20);
for my $round (1 .. $rounds) {
    my $etag = call(GET => '/api/m?key=cas')->{headers}{etag} or die 'no ETag';
    # Every client holds the same ETag and tries to move the value on.
    my @kids;
    for my $c (1 .. $clients) {
        pipe(my $r, my $w) or die "pipe: $!";
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            close $r;
            my $res = put_if_match('/api/m?key=cas', $etag, "round $round by $c");
            print $w "$res->{status}\n";
            close $w;
            POSIX::_exit(0);
        }
        close $w;
        push @kids, [$pid, $r];
    }
    my %status;
    for (@kids) {
        my ($pid, $r) = @$_;
        my $s = <$r> // 'none';
        chomp $s;
        $status{$s}++;
        waitpid $pid, 0;
    }
    push @winners, join ',', map {"$_:$status{$_}"} sort keys %status;
}
is_deeply \@winners, [("204:1,412:" . ($clients - 1)) x $rounds], "$rounds rounds of $clients: one 204 each, the rest 412";
like call(GET => '/api/m?key=cas')->{content}, qr/^round $rounds by \d+$/, 'the last round won';
--- request
GET /api/m?key=nope
--- error_code: 404
