# Session ids: 128 random bits from getrandom, 32 lowercase hex digits, never
# repeated.
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

no_shuffle();

# Sends @reqs pipelined on one connection; returns the response heads (every
# response here has an empty body).
sub pipeline {
    my @reqs = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT})
        or die "connect: $!";
    print $sock join '', @reqs;
    my ($buf, @heads) = ('');
    while (@heads < @reqs) {
        sysread($sock, $buf, 65536, length $buf) or die 'connection closed';
        push @heads, $1 while $buf =~ s/\A(HTTP.*?)\r\n\r\n//s;
    }
    close $sock;
    return @heads;
}

# Makes $n sessions through the API, in batches that are ended before the next
# one starts: the map never holds more than a batch, so an id repeated across
# batches would not be hidden by the store's retry on an existing id.
sub make_ids {
    my $n = shift;
    my @ids;
    while (@ids < $n) {
        my @heads = pipeline(map { "PUT /session HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx" } 1 .. 500);
        my @batch = map { m{^HTTP/1.1 201 .*^Set-Cookie: SMSESSION=([^;\r]*);}ms ? $1 : die "PUT: $_" } @heads;
        for (pipeline(map { "DELETE /session HTTP/1.1\r\nHost: t\r\nCookie: SMSESSION=$_\r\n\r\n" } @batch)) {
            die "DELETE: $_" if !m{^HTTP/1.1 204 };
        }
        push @ids, @batch;
    }
    return @ids;
}

share_with_init(qw(make_ids is));

run_tests();

__DATA__

=== TEST 1: 10000 ids, all distinct and of full length
--- main_config
    load_module $TEST_NGINX_MODULE;
--- http_config
    shared_map sessions hashmap?space=1m;
--- config
    shared_map_session sessions;
    location = /session {
        shared_map_session_api write;
    }
--- init
my @ids = make_ids(10_000);
is scalar(grep { /^[0-9a-f]{32}$/ } @ids), 10_000, 'every id is 32 lowercase hex digits';
my %seen;
$seen{$_}++ for @ids;
is scalar(keys %seen), 10_000, 'no id repeats';
# 128 random bits: each hex digit position takes every value.
my @digits = map { my $i = $_; my %d; $d{ substr $_, $i, 1 }++ for @ids; scalar keys %d } 0 .. 31;
is scalar(grep { $_ == 16 } @digits), 32, 'every position takes all 16 digits';
--- request
GET /session
--- error_code: 404
--- no_error_log
[error]
