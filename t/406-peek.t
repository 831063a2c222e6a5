# shared_map_var ... peek: a read that leaves the entry's recency alone, so a
# key only peeked at is evicted before keys read since. API reads peek too.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

no_shuffle();
no_long_string();

# Four entries in eight buckets: eviction samples all of them, so it removes
# the least recently used exactly.
our $HttpConfig = <<'_EOC_';
    shared_map lru tinymap?space=32k&entries=4&evict;
    shared_map_var $arg_k $lru_get map=lru;
    shared_map_var $arg_k $lru_peek map=lru peek;
_EOC_

our $Config = <<'_EOC_';
    location /api/ { shared_map_api; }
    location = /get { return 200 "$lru_get"; }
    location = /peek { return 200 "$lru_peek"; }
_EOC_

use_default_config(http_config => $HttpConfig, config => $Config);

# Writes a, b, c, d (in that order of use), then reads b, c and d.
sub fill {
    my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
    my $http = HTTP::Tiny->new;
    $http->request("PUT", "$base/api/lru?key=$_", { content => "v$_" }) for qw(a b c d);
    $http->get("$base/get?k=$_")->{content} eq "v$_" or die "read $_" for qw(b c d);
}
share_with_init('fill');

run_tests();

__DATA__

=== TEST 1: a key only peeked at is evicted before keys read since
--- init
fill();
--- request eval
["GET /peek?k=a", "GET /peek?k=a", "GET /peek?k=a", "PUT /api/lru?key=e\nve",
 "GET /api/lru?key=a", "GET /api/lru?key=b", "GET /api/lru?key=c", "GET /api/lru?key=d", "GET /api/lru?key=e"]
--- error_code eval
[200, 200, 200, 201, 404, 200, 200, 200, 200]
--- response_body eval
["va", "va", "va", "", "key not found\n", "vb", "vc", "vd", "ve"]



=== TEST 2: the same reads without peek keep the key: the one not read since goes
--- init
fill();
--- request eval
["GET /get?k=a", "GET /get?k=a", "GET /get?k=a", "PUT /api/lru?key=e\nve",
 "GET /api/lru?key=a", "GET /api/lru?key=b", "GET /api/lru?key=c", "GET /api/lru?key=d", "GET /api/lru?key=e"]
--- error_code eval
[200, 200, 200, 201, 200, 404, 200, 200, 200]
--- response_body eval
["va", "va", "va", "", "va", "key not found\n", "vc", "vd", "ve"]



=== TEST 3: API reads peek: a key only read through the API is evicted first
--- init
fill();
--- request eval
["GET /api/lru?key=a", "GET /api/lru?key=a&stale", "HEAD /api/lru?key=a", "PUT /api/lru?key=e\nve",
 "GET /api/lru?key=a", "GET /api/lru?key=b"]
--- error_code eval
[200, 200, 200, 201, 404, 200]



=== TEST 4: a peek of an absent key is empty
--- request
GET /peek?k=nothing
--- response_body chomp



=== TEST 5: peek is a parameter of shared_map_var only
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_incr $arg_k $n map=m peek;
--- config
--- must_die
--- error_log
invalid parameter "peek"



=== TEST 6: peek given twice
--- http_config
    shared_map m hashmap?space=1m;
    shared_map_var $arg_k $v map=m peek peek;
--- config
--- must_die
--- error_log
duplicate parameter "peek"
