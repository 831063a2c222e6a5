# shared_map_api: JSON listings of a map (prefix, limit), of every map, and clear.
use Test::Nginx::Socket 'no_plan';
use FindBin;
use lib "$FindBin::Bin/lib";
use SharedMapTest;
use JSON::PP ();

# Every block gets the API suites' maps and locations unless it brings its own
# (t/lib/SharedMapTest.pm); a block named "..." continues the previous one.
use_api_config(h_entries => 100, more_config => <<'_EOC_');
    location /maps { shared_map_api; }
    location ~ ^/re/ { shared_map_api; }
_EOC_

# A listing in a comparable form: entries sorted by key, free_space (which
# depends on the slab's bookkeeping) checked for being within space, and
# canonical key order. Bodies that are not JSON pass unchanged.
sub canon {
    my $body = shift;
    return $body if $body !~ /^\{/;
    my $doc = JSON::PP::decode_json($body);
    for my $m (exists $doc->{maps} ? @{ $doc->{maps} } : ($doc)) {
        my $s = $m->{stats};
        $s->{free_space} = ($s->{free_space} > 0 && $s->{free_space} < $s->{space}) ? "ok" : "bad: $s->{free_space}";
        # Lock statistics depend on timing: three non-negative integers.
        my $l = delete $s->{lock} // {};
        my @bad = grep { ($l->{$_} // '') !~ /^\d+\z/ } qw(waits wait_us hold_max_us);
        $s->{lock} = @bad ? "bad: @bad" : "ok";
        if ($m->{entries}) {
            $m->{entries} = [sort { ($a->{key} // $a->{key_base64}) cmp ($b->{key} // $b->{key_base64}) }
                             @{ $m->{entries} }];
        }
    }
    return JSON::PP->new->utf8->canonical->encode($doc) . "\n";
}

run_tests();

__DATA__

=== TEST 1: an empty map: its statistics and no entries
--- request
GET /api/m
--- response_headers
Content-Type: application/json
--- response_body_filters eval
\&main::canon
--- response_body
{"entries":[],"more":false,"name":"m","stats":{"entries":0,"evictions":0,"expirations":0,"free_space":"ok","hits":0,"lock":"ok","max_entries":1000,"misses":0,"refused":0,"space":1048576,"type":"tinymap"}}



=== TEST 2: entries with their types; keys and strings that are not UTF-8 in base64
--- request eval
["PUT /api/h?key=s\nstring", "PUT /api/h?key=i&type=int\n-1", "PUT /api/h?key=l&type=long\n10000000000",
 "PUT /api/h?key=%FF%FE\nbinary key", "PUT /api/h?key=bin\n\xff\x00", "PUT /api/h?key=%C3%A9t%C3%A9\n\xc3\xa9t\xc3\xa9",
 "GET /api/h"]
--- error_code eval
[201, 201, 201, 201, 201, 201, 200]
--- response_body_filters eval
\&main::canon
--- response_body eval
["", "", "", "", "", "",
'{"entries":[{"key_base64":"//4=","type":"string","value":"binary key"},{"key":"bin","type":"string","value_base64":"/wA="},{"key":"i","type":"int","value":-1},{"key":"l","type":"long","value":10000000000},{"key":"s","type":"string","value":"string"},{"key":"été","type":"string","value":"été"}],"more":false,"name":"h","stats":{"entries":6,"evictions":0,"expirations":0,"free_space":"ok","hits":0,"lock":"ok","max_entries":100,"misses":0,"refused":0,"space":1048576,"type":"hashmap"}}
']



=== TEST 3: prefix selects the entries whose key starts with it (percent-decoded too)
--- request eval
["PUT /api/m?key=user:1\na", "PUT /api/m?key=user:2\nb", "PUT /api/m?key=admin:1\nc", "PUT /api/m?key=user%2F3\nd",
 "GET /m?prefix=user:", "GET /api/m?prefix=user%2F", "GET /api/m?prefix=nobody", "GET /api/m?prefix="]
--- error_code eval
[201, 201, 201, 201, 200, 200, 200, 200]
--- response_body_filters eval
sub { my $c = main::canon($_[0]); $c =~ /"entries":(\[[^\]]*\])/ ? "$1\n" : $c }
--- response_body eval
["", "", "", "",
 qq{[{"key":"user:1","type":"string","value":"a"},{"key":"user:2","type":"string","value":"b"}]\n},
 qq{[{"key":"user/3","type":"string","value":"d"}]\n},
 "[]\n",
 qq{[{"key":"admin:1","type":"string","value":"c"},{"key":"user/3","type":"string","value":"d"},{"key":"user:1","type":"string","value":"a"},{"key":"user:2","type":"string","value":"b"}]\n}]



=== TEST 4: limit caps the entries; "more" says that some were left out
--- http_config
    shared_map m tinymap?space=1m&entries=1000;
    shared_map h hashmap?space=1m&entries=100;
    shared_map lim tinymap?space=1m&entries=1000;
--- request eval
["PUT /api/lim?key=a\n1", "PUT /api/lim?key=b\n2", "PUT /api/lim?key=c\n3",
 "GET /api/lim?limit=2", "GET /api/lim?limit=3", "GET /api/lim?limit=0"]
--- error_code eval
[201, 201, 201, 200, 200, 200]
--- response_body_filters eval
sub { my $c = main::canon($_[0]); return $c if $c !~ /^\{/; my $d = JSON::PP::decode_json($c); scalar(@{$d->{entries}}) . " more=" . ($d->{more} ? "true" : "false") . " entries=$d->{stats}{entries}\n" }
--- response_body eval
["", "", "", "2 more=true entries=3\n", "3 more=false entries=3\n", "0 more=true entries=3\n"]



=== TEST 5: the default limit is 1000
--- http_config
    shared_map big hashmap?space=4m&entries=2000;
--- config
    location /api/ { shared_map_api; }
--- init
use HTTP::Tiny;
my $http = HTTP::Tiny->new(keep_alive => 1);
for my $i (1 .. 1001) {
    my $res = $http->request("POST", "http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/api/big?key=k$i&incr=1");
    die "POST k$i: $res->{status}" if $res->{status} != 200;
}
--- request
GET /api/big
--- response_body_filters eval
sub { my $d = JSON::PP::decode_json($_[0]); scalar(@{$d->{entries}}) . " more=" . ($d->{more} ? "true" : "false") . " entries=$d->{stats}{entries}\n" }
--- response_body
1000 more=true entries=1001



=== TEST 6: hits and misses are counted by GET of a key; listings count neither
--- request eval
["PUT /api/m?key=k\nv", "GET /api/m?key=k", "GET /api/m?key=k", "GET /api/m?key=nope", "GET /api/m", "GET /api/m"]
--- error_code eval
[201, 200, 200, 404, 200, 200]
--- response_body_filters eval
sub { my $c = main::canon($_[0]); $c =~ /("hits":\d+).*("misses":\d+)/ ? "$1 $2\n" : $c }
--- response_body eval
["", "v", "v", "key not found\n", "\"hits\":2 \"misses\":1\n", "\"hits\":2 \"misses\":1\n"]



=== TEST 7: GET LOCATION/ lists every map with its statistics
--- http_config
    shared_map m7 tinymap?space=1m&entries=1000;
    shared_map h7 hashmap?space=1m&entries=100;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/h7?key=x\ny", "GET /api/"]
--- error_code eval
[201, 200]
--- response_headers eval
["", "Content-Type: application/json"]
--- response_body_filters eval
\&main::canon
--- response_body eval
["",
'{"maps":[{"name":"m7","stats":{"entries":0,"evictions":0,"expirations":0,"free_space":"ok","hits":0,"lock":"ok","max_entries":1000,"misses":0,"refused":0,"space":1048576,"type":"tinymap"}},{"name":"h7","stats":{"entries":1,"evictions":0,"expirations":0,"free_space":"ok","hits":0,"lock":"ok","max_entries":100,"misses":0,"refused":0,"space":1048576,"type":"hashmap"}}]}
']



=== TEST 8: a location without a trailing slash and a regex location serve maps too
--- request eval
["PUT /maps/m?key=a\n1", "GET /re/m?key=a", "GET /maps", "GET /maps/", "GET /re/", "GET /maps/nope", "GET /re/nope"]
--- error_code eval
[201, 200, 200, 200, 200, 404, 404]
--- response_body_filters eval
sub { $_[0] =~ /^\{"maps":\[\{"name":"m".*"name":"h"/ ? "list\n" : $_[0] }
--- response_body eval
["", "1", "list\n", "list\n", "list\n", "unknown map \"nope\"\n", "unknown map \"nope\"\n"]



=== TEST 9: DELETE of the map clears it (204); other maps keep their entries
--- http_config
    shared_map m9 tinymap?space=1m&entries=1000;
    shared_map h9 hashmap?space=1m&entries=100;
--- config
    location /api/ { shared_map_api; }
--- request eval
["PUT /api/m9?key=a\n1", "PUT /api/m9?key=b\n2", "PUT /api/h9?key=c\n3", "DELETE /api/m9", "GET /api/m9?key=a",
 "GET /api/m9", "GET /api/h9?key=c"]
--- error_code eval
[201, 201, 201, 204, 404, 200, 200]
--- response_body_filters eval
sub { my $c = main::canon($_[0]); $c =~ /^\{/ && $c =~ /("entries":\[\]).*("entries":0)/ ? "$1 $2\n" : $c }
--- response_body eval
["", "", "", "", "key not found\n", "\"entries\":[] \"entries\":0\n", "3"]
