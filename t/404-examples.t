# The examples in nginx-conf/ that use named variables and matching maps, run
# as they are: an IP block list updated through the API, a daily quota per API
# key, routing and feature flags by URI prefix.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;

no_shuffle();
no_long_string();
no_root_location();

our ($BlockHttp, $BlockServer) = example_config('ip-blocklist.conf');
# A quota of 3 a day instead of 1000, to reach it in a test, and a map of
# 64k, to fill it in one.
our ($QuotaHttp, $QuotaServer) = example_config('api-quota.conf', qr/init=1000/ => 'init=3', qr/space=4m/ => 'space=64k');
our ($RouteHttp, $RouteServer) = example_config('prefix-routing.conf');

add_block_preprocessor(sub {
    my $block = shift;
    my ($http, $server) = $block->name =~ /block list/ ? ($BlockHttp, $BlockServer)
                        : $block->name =~ /quota/      ? ($QuotaHttp, $QuotaServer)
                        :                                ($RouteHttp, $RouteServer);
    return if $block->name =~ /^\S+ \d+: \.\.\./;
    $block->set_value(main_config => 'load_module $TEST_NGINX_MODULE;');
    $block->set_value(http_config => $http);
    $block->set_value(config => $server);
});

run_tests();

__DATA__

=== TEST 1: ip block list: a client is served until its range is listed through the API, and again once it is removed
--- request eval
["GET /", "PUT /maps/blocked?key=127.1.2.3/8\nabuse report 42", "GET /", "GET /maps/blocked?key=127.0.0.1",
 "PUT /maps/blocked?key=127.0.0.1\nfine", "GET /", "DELETE /maps/blocked?key=127.0.0.1",
 "DELETE /maps/blocked?key=127.0.0.0/8", "GET /", "PUT /maps/blocked?key=not-an-address\nx"]
--- error_code eval
[200, 201, 403, 200, 201, 403, 204, 204, 200, 400]
--- response_body eval
["welcome\n", "", "blocked: abuse report 42\n", "abuse report 42", "", "blocked: fine\n", "", "", "welcome\n",
 "invalid key \"not-an-address\": not an IP address or range\n"]



=== TEST 2: daily quota: each API key gets its own count, 429 once it is spent
--- request eval
["GET /api/items", "GET /api/items", "GET /api/items", "GET /api/items", "GET /api/items", "GET /api/items",
 "GET /api/items"]
--- more_headers eval
["", "X-Api-Key: k1", "X-Api-Key: k1", "X-Api-Key: k1", "X-Api-Key: k1", "X-Api-Key: k2", "X-Api-Key: nope"]
--- error_code eval
[401, 200, 200, 200, 429, 200, 401]
--- response_body eval
["a known X-Api-Key header is needed\n", "api answer\n", "api answer\n", "api answer\n", "daily quota exceeded\n",
 "api answer\n", "a known X-Api-Key header is needed\n"]
--- response_headers eval
["", "X-Quota-Remaining: 2", "X-Quota-Remaining: 1", "X-Quota-Remaining: 0", "", "X-Quota-Remaining: 2", ""]



=== TEST 3: ... the quota's counters, read through the API, are named by key and day
--- request
GET /quota?prefix=k1:
--- response_body_like: ^\{"name":"quota".*"entries":\[\{"key":"k1:\d{4}-\d\d-\d\d","ttl":\d+,"type":"long","value":-1\}\],"more":false\}$



=== TEST 4: daily quota: requests with made-up keys cannot evict a spent quota, nor another letter case dodge it
(In Test::Nginx's HUP mode the reload keeps TEST 2's counts, as it should, so k1 starts spent: this block needs a new nginx.)
--- skip_eval
8: $ENV{TEST_NGINX_USE_HUP}
--- init
return if $ENV{TEST_NGINX_USE_HUP};    # skip_eval skips the request, not this
use HTTP::Tiny;
my $ua = HTTP::Tiny->new(keep_alive => 1);
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}";
my $get = sub { $ua->get("$base/api/items", { headers => { 'X-Api-Key' => shift } })->{status} };
my @spent = map { $get->('k1') } 1 .. 4;
Test::More::is("@spent", '200 200 200 429', 'k1 spends its quota');
my %status;
$status{ $get->("junk-$_") }++ for 1 .. 1500;
Test::More::is(join(',', map {"$_:$status{$_}"} sort keys %status), '401:1500', '1,500 made-up keys: refused');
Test::More::is($get->('k1'), 429, 'k1 is still spent');
Test::More::is($get->('K1'), 429, 'K1 is k1');
my $stats = $ua->get("$base/quota")->{content};
Test::More::ok($stats =~ /"entries":1,/, 'one counter in the map');
Test::More::ok($stats =~ /"evictions":0,/, 'nothing evicted');
--- request
GET /quota?key=k2:2000-01-01
--- error_code: 404



=== TEST 5: routing by URI prefix: the longest stored prefix picks the backend; feature flags close a part of the site
--- request eval
["GET /api/v2/users", "PUT /maps/routes?key=/\nv1", "PUT /maps/routes?key=/api/v2/\nv2",
 "GET /api/v2/users", "GET /api/v1/users", "GET /shop/cart",
 "PUT /maps/flags?key=/shop/\nmaintenance", "GET /shop/cart", "GET /shopping",
 "DELETE /maps/flags?key=/shop/", "GET /shop/cart"]
--- error_code eval
[404, 201, 201, 200, 200, 200, 201, 503, 200, 204, 200]
--- response_body eval
["no route\n", "", "", "v2 served /api/v2/users\n", "v1 served /api/v1/users\n", "v1 served /shop/cart\n",
 "", "down for maintenance\n", "v1 served /shopping\n", "", "v1 served /shop/cart\n"]
