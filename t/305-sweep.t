# The workers' timer reclaims expired entries and their memory without any read:
# the map's statistics show the entries gone, the space back, the expirations counted.
use Test::Nginx::Socket 'no_plan';

workers(2);
master_on();
no_shuffle();
run_tests();

__DATA__

=== TEST 1: 200 one-kilobyte values with a 1 s time to live, written through the API
--- main_config
load_module $TEST_NGINX_MODULE;
--- http_config
shared_map m hashmap?space=1m&entries=1000&timeout=1s;
--- config
location /maps/ { shared_map_api; }
--- init
use HTTP::Tiny;
my $base = "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/maps";
my $http = HTTP::Tiny->new(keep_alive => 0);
my $before = $http->get("$base/m?limit=0")->{content};
my ($free_before) = $before =~ /"free_space":(\d+)/;
for my $i (1 .. 200) {
    my $res = $http->put("$base/m?key=k$i", { content => "x" x 1024 });
    die "PUT failed: $res->{status}" unless $res->{status} == 201;
}
my $full = $http->get("$base/m?limit=0")->{content};
my ($free_full) = $full =~ /"free_space":(\d+)/;
Test::More::cmp_ok($free_full, '<=', $free_before - 200 * 1024, "the values take space");
Test::More::like($full, qr/"entries":200\b/, "200 entries");
# No request touches the map now; only the workers' timers can reclaim it.
sleep 3;
my $after = $http->get("$base/m?limit=0")->{content};
my ($free_after) = $after =~ /"free_space":(\d+)/;
Test::More::like($after, qr/"entries":0\b/, "the timer removed every expired entry");
Test::More::like($after, qr/"expirations":200\b/, "and counted them");
Test::More::is($free_after, $free_before, "all their memory is back");
--- request
GET /maps/m?limit=0
--- response_body_like: "hits":0,"misses":0
