# shared_map_api: listings of a large map stream out in batches (the map's lock
# released between them) and still list every entry exactly once, also while
# other clients write; a clear of a large map works in batches too.
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET ();
use HTTP::Tiny ();
use File::Temp qw(tempdir);
use JSON::PP ();
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use SharedMapState qw(state_file);

workers(2);
master_on();
no_shuffle();
no_long_string();

my $N = 30_000;
my $dir = $ENV{TEST_NGINX_STATE_DIR} = tempdir(CLEANUP => 1);
{
    # 30,000 counters k00000.. and 3,000 strings d0000.. to delete meanwhile.
    my @records = ((map { [sprintf('k%05d', $_), 1, $_, 0] } 0 .. $N - 1),
                   (map { [sprintf('d%04d', $_), 2, 'x' x 20, 0] } 0 .. 2999));
    open my $f, '>', "$dir/big.state" or die $!;
    binmode $f;
    print $f state_file(1, @records);
    close $f;
}

# A JSON listing checked: every k-key once, nothing twice.
sub check_json {
    my $doc = eval { JSON::PP::decode_json(shift) } or return "not JSON: $@\n";
    my %seen;
    my $dups = grep { $seen{$_->{key}}++ } @{ $doc->{entries} };
    my $k = grep { /^k\d{5}\z/ } keys %seen;
    return "k-keys $k, duplicates $dups, more " . ($doc->{more} ? 'true' : 'false') . "\n";
}

sub check_prometheus {
    my %seen;
    my $dups = 0;
    for (split /\n/, shift) {
        $dups++ if /^shared_map_value\{map="big",key="(k\d{5})"\}/ && $seen{$1}++;
    }
    my $n = keys %seen;
    return "samples $n, duplicates $dups\n";
}

# Starts a full listing, reads 64 KiB of it, makes other clients add 2,000 keys
# and delete the d-strings, then reads the rest.
sub listing_while_writing {
    my $port = $ENV{TEST_NGINX_SERVER_PORT};
    my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
    print $c "GET /api/big?limit=1000000 HTTP/1.0\r\nHost: localhost\r\n\r\n";
    my $got = '';
    read($c, $got, 65536, 0);
    my $http = HTTP::Tiny->new(keep_alive => 1);
    for my $i (0 .. 2999) {
        $http->request('DELETE', sprintf("http://127.0.0.1:$port/api/big?key=d%04d", $i));
        $http->request('POST', "http://127.0.0.1:$port/api/big?key=n$i&incr=1") if $i < 2000;
    }
    local $/;
    $got .= <$c>;
    close $c;
    my ($body) = $got =~ /\r\n\r\n(.*)\z/s;
    my $res = check_json($body);
    Test::More::is($res, "k-keys $N, duplicates 0, more false\n",
                   "a listing read slowly while others write lists every entry present throughout once");
}

use_default_config(
    http_config => 'shared_map big tinymap?space=8m&entries=40000&state=$TEST_NGINX_STATE_DIR/big.state;',
    config => 'location /api/ { shared_map_api; }',
);

# Clients that start full listings and scrapes and go away after the first
# bytes: the worker must drop the stream, free it, and go on serving.
sub clients_go_away {
    my $port = $ENV{TEST_NGINX_SERVER_PORT};
    for my $i (1 .. 20) {
        my $c = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port") or die "connect: $!";
        my $q = $i % 2 ? 'limit=1000000' : 'format=prometheus';
        print $c "GET /api/big?$q HTTP/1.0\r\nHost: localhost\r\n\r\n";
        my $got = '';
        sysread($c, $got, 1000);
        close $c;
    }
}

run_tests();

__DATA__

=== TEST 1: a full JSON listing of 33,000 entries lists each once
--- request
GET /api/big?limit=1000000
--- response_headers
Content-Type: application/json
Content-Length:
--- response_body_filters eval
\&main::check_json
--- response_body
k-keys 30000, duplicates 0, more false
--- no_error_log
[error]



=== TEST 2: ... a limit cuts the listing and says so
--- request
GET /api/big?prefix=k&limit=29999
--- response_body_filters eval
\&main::check_json
--- response_body
k-keys 29999, duplicates 0, more true



=== TEST 3: ... a Prometheus scrape samples every numeric entry once
--- request
GET /api/big?format=prometheus
--- response_body_filters eval
\&main::check_prometheus
--- response_body
samples 30000, duplicates 0



=== TEST 4: ... every map at once, too
--- request
GET /api/?format=prometheus
--- response_body_filters eval
\&main::check_prometheus
--- response_body
samples 30000, duplicates 0



=== TEST 5: ... HEAD sends the headers only
--- request
HEAD /api/big?limit=1000000
--- response_headers
Content-Type: application/json
--- response_body



=== TEST 6: ... a listing read slowly while other clients write
--- init
main::listing_while_writing();
--- request
GET /api/big?prefix=n&limit=0
--- response_body_like eval
qr/"entries":32000,.*"entries":\[\],"more":true\}\z/



=== TEST 7: ... clients that go away in the middle of a listing leave the worker serving
--- init
main::clients_go_away();
--- request
GET /api/big?limit=1
--- response_body_like eval
qr/"more":true\}\z/
--- no_error_log
[alert]
[crit]



=== TEST 8: ... a clear of the whole map, in batches
--- request eval
["DELETE /api/big", "GET /api/big"]
--- error_code eval
[204, 200]
--- response_body_like eval
["^\\z", '"entries":0,.*"entries":\[\],"more":false\}\z']
