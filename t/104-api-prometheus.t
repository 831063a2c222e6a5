# shared_map_api: format=prometheus, read back with the reference parser
# (PyPI's prometheus_client, through t/prometheus.py).
use Test::Nginx::Socket 'no_plan';
use FindBin ();
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use File::Temp ();

# Every block gets the API suites' maps and locations unless it brings its own
# (t/lib/SharedMapTest.pm); a block named "..." continues the previous one.
use_api_config(h_entries => 100);

# The body as the reference parser understands it, samples sorted within each
# family; only families matching $only (and their samples) are kept when given. Bodies not in the format (empty
# ones of writes) pass unchanged.
sub parsed {
    my ($body, $only) = @_;
    return $body if $body !~ /^# HELP/;
    my $tmp = File::Temp->new;
    binmode $tmp;
    print $tmp $body;
    close $tmp;
    my $out = `python3 $FindBin::Bin/prometheus.py < $tmp 2>&1`;
    return "parser failed ($?):\n$out" if $?;
    my ($keep, $res, @samples) = (1, '');
    for my $line (split /^/, $out) {
        if ($line =~ /^  /) {
            push @samples, $line if $keep;
            next;
        }
        $res .= CORE::join('', sort @samples);
        @samples = ();
        $keep = !defined $only || $line =~ $only;
        $res .= $line if $keep;
    }
    return $res . CORE::join('', sort @samples);
}

run_tests();

__DATA__

=== TEST 1: the statistics of a map as gauges and counters, with HELP and TYPE
--- request
GET /api/m?format=prometheus
--- response_headers
Content-Type: text/plain; version=0.0.4
--- response_body_filters eval
sub { my $b = main::parsed($_[0]); $b =~ s/^(  shared_map_lock_\w+\{map="m"\}) [0-9.e-]+$/$1 non-negative/mg; $b }
--- response_body
shared_map_info gauge The map and its type.
  shared_map_info{map="m",type="tinymap"} 1
shared_map_space_bytes gauge Size of the map's shared memory zone.
  shared_map_space_bytes{map="m"} 1048576
shared_map_free_space_bytes gauge Free pages in the map's zone, in bytes.
  shared_map_free_space_bytes{map="m"} positive
shared_map_entries gauge Entries in the map.
  shared_map_entries{map="m"} 0
shared_map_max_entries gauge The most entries the map holds.
  shared_map_max_entries{map="m"} 1000
shared_map_hits counter Lookups that found their key.
  shared_map_hits_total{map="m"} 0
shared_map_misses counter Lookups that did not find their key.
  shared_map_misses_total{map="m"} 0
shared_map_evictions counter Entries evicted to make room.
  shared_map_evictions_total{map="m"} 0
shared_map_expirations counter Entries removed because they expired.
  shared_map_expirations_total{map="m"} 0
shared_map_refused counter Writes refused for lack of room.
  shared_map_refused_total{map="m"} 0
shared_map_lock_waits counter Acquisitions of the map's lock that had to wait.
  shared_map_lock_waits_total{map="m"} non-negative
shared_map_lock_wait_seconds counter Time spent waiting for the map's lock.
  shared_map_lock_wait_seconds_total{map="m"} non-negative
shared_map_lock_hold_max_seconds gauge The longest hold of the map's lock.
  shared_map_lock_hold_max_seconds{map="m"} non-negative
shared_map_value gauge Numeric entries of the map.



=== TEST 2: numeric entries are samples labelled by map and key; strings are left out
--- request eval
["PUT /api/m?key=i&type=int\n-5", "PUT /api/m?key=l&type=long\n1234567890123", "PUT /api/m?key=s\n42",
 "POST /api/m?key=c&incr=3", "GET /m?format=prometheus"]
--- error_code eval
[201, 201, 201, 200, 200]
--- response_body_filters eval
sub { main::parsed($_[0], qr/^shared_map_(value|entries) /) }
--- response_body eval
["", "", "", "3", 'shared_map_entries gauge Entries in the map.
  shared_map_entries{map="m"} 4
shared_map_value gauge Numeric entries of the map.
  shared_map_value{key="c",map="m"} 3
  shared_map_value{key="i",map="m"} -5
  shared_map_value{key="l",map="m"} 1234567890123
']



=== TEST 3: label values escape backslash, double quote and newline; UTF-8 keys stay
--- http_config
    shared_map m tinymap?space=1m&entries=1000;
    shared_map h hashmap?space=1m&entries=100;
    shared_map esc tinymap?space=1m&entries=1000;
--- request eval
["POST /api/esc?key=back%5Cslash&incr=1", "POST /api/esc?key=a%22quote%22&incr=2", "POST /api/esc?key=new%0Aline&incr=3",
 "POST /api/esc?key=%C3%A9t%C3%A9&incr=4", "GET /api/esc?format=prometheus"]
--- response_body_filters eval
sub { main::parsed($_[0], qr/^shared_map_value /) }
--- response_body eval
["1", "2", "3", "4", 'shared_map_value gauge Numeric entries of the map.
  shared_map_value{key="\u00e9t\u00e9",map="esc"} 4
  shared_map_value{key="a\"quote\"",map="esc"} 2
  shared_map_value{key="back\\\\slash",map="esc"} 1
  shared_map_value{key="new\nline",map="esc"} 3
']



=== TEST 4: ... and the raw text escapes them as the format requires
--- request
GET /api/esc?format=prometheus&prefix=new
--- response_body_like eval
qr/^shared_map_value\{map="esc",key="new\\nline"\} 3$/m



=== TEST 5: a key that is not UTF-8 is labelled key_base64
--- http_config
    shared_map m tinymap?space=1m&entries=1000;
    shared_map h hashmap?space=1m&entries=100;
    shared_map b64 tinymap?space=1m&entries=1000;
--- request eval
["POST /api/b64?key=%FF%00%01&incr=7", "GET /api/b64?format=prometheus"]
--- response_body_filters eval
sub { main::parsed($_[0], qr/^shared_map_value /) }
--- response_body eval
["7", 'shared_map_value gauge Numeric entries of the map.
  shared_map_value{key_base64="/wAB",map="b64"} 7
']



=== TEST 6: counters follow hits, misses and writes refused for lack of room
--- http_config
    shared_map tiny tinymap?space=32k&entries=2;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/tiny?key=a\n1", "PUT /api/tiny?key=b\n2", "PUT /api/tiny?key=c\n3", "GET /api/tiny?key=a", "GET /api/tiny?key=c",
 "GET /api/tiny?format=prometheus"]
--- error_code eval
[201, 201, 507, 200, 404, 200]
--- response_body_filters eval
sub { main::parsed($_[0], qr/^shared_map_(entries|hits|misses|refused) /) }
--- response_body eval
["", "", "shared map \"tiny\" is full\n", "1", "key not found\n", 'shared_map_entries gauge Entries in the map.
  shared_map_entries{map="tiny"} 2
shared_map_hits counter Lookups that found their key.
  shared_map_hits_total{map="tiny"} 1
shared_map_misses counter Lookups that did not find their key.
  shared_map_misses_total{map="tiny"} 1
shared_map_refused counter Writes refused for lack of room.
  shared_map_refused_total{map="tiny"} 1
']



=== TEST 7: evictions and expirations are counted
--- http_config
    shared_map lru tinymap?space=32k&entries=2&evict;
--- config
    location /api/ { shared_map_api; }
--- init
use HTTP::Tiny;
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/api/lru";
my $http = HTTP::Tiny->new;
$http->request("POST", "$base?key=short&incr=1&ttl=1");
sleep 2;
$http->request("GET", "$base?key=short");
for my $k (qw(a b c)) { $http->request("POST", "$base?key=$k&incr=1") }
--- request
GET /api/lru?format=prometheus
--- response_body_filters eval
sub { main::parsed($_[0], qr/^shared_map_(entries|evictions|expirations) /) }
--- response_body
shared_map_entries gauge Entries in the map.
  shared_map_entries{map="lru"} 2
shared_map_evictions counter Entries evicted to make room.
  shared_map_evictions_total{map="lru"} 1
shared_map_expirations counter Entries removed because they expired.
  shared_map_expirations_total{map="lru"} 1



=== TEST 8: prefix and limit select the samples
--- request eval
["POST /api/m?key=x1&incr=1", "POST /api/m?key=x2&incr=1", "POST /api/m?key=y&incr=1",
 "GET /api/m?format=prometheus&prefix=y", "GET /api/m?format=prometheus&prefix=x&limit=1"]
--- response_body_filters eval
sub { my $p = main::parsed($_[0], qr/^shared_map_value /); $p =~ s/key="x\d"/key="x?"/; $p }
--- response_body eval
["1", "1", "1", 'shared_map_value gauge Numeric entries of the map.
  shared_map_value{key="y",map="m"} 1
', 'shared_map_value gauge Numeric entries of the map.
  shared_map_value{key="x?",map="m"} 1
']



=== TEST 9: GET LOCATION/?format=prometheus: every map in one exposition, one family each
--- http_config
    shared_map m9 tinymap?space=1m&entries=1000;
    shared_map h9 hashmap?space=1m&entries=100;
--- config
    location /api/ { shared_map_api; }
--- request eval
["POST /api/m9?key=a&incr=1", "POST /api/h9?key=b&incr=2", "GET /api/?format=prometheus"]
--- response_body_filters eval
sub { main::parsed($_[0], qr/^shared_map_(info|value) /) }
--- response_body eval
["1", "2", 'shared_map_info gauge The map and its type.
  shared_map_info{map="h9",type="hashmap"} 1
  shared_map_info{map="m9",type="tinymap"} 1
shared_map_value gauge Numeric entries of the map.
  shared_map_value{key="a",map="m9"} 1
  shared_map_value{key="b",map="h9"} 2
']
